//! perfkit's benchmarks: an honest, dependency-light harness and the benchmark groups that use
//! it, run by the `perf-bench` binary (usually through `cargo xtask bench [--quick] [FILTER...]`).
//!
//! Every result row names the subject (a perfkit component), the peer measured in the same run
//! on the same workload, both figures and their ratio, where a ratio above 1 always means the
//! subject did better. Subject and peer samples are interleaved so machine noise hits both.
//! This crate is not published and is not a general-purpose benchmarking library.
//!
//! ```
//! use perfkit_benches::harness::{Bench, Group};
//!
//! fn sums(bench: &mut Bench) {
//!     let data: Vec<u64> = (0..bench.pick(100, 10_000)).collect();
//!     bench.compare_ns(
//!         "sum of u64",
//!         "iter().sum()",
//!         |iters| for _ in 0..iters { std::hint::black_box(std::hint::black_box(&data).iter().sum::<u64>()); },
//!         "fold",
//!         |iters| for _ in 0..iters { std::hint::black_box(std::hint::black_box(&data).iter().fold(0u64, |a, b| a + b)); },
//!     );
//! }
//!
//! let mut bench = Bench::new(true).with_sampling(perfkit_benches::harness::Sampling::smoke());
//! bench.run(&[Group::new("sums", "sum of a slice two ways", sums)], &[]);
//! assert_eq!(bench.rows().len(), 1);
//! ```

pub mod groups;
pub mod harness;
