//! Reports (grouping, totals, JSON/CSV export) and recommendations from recorded usage.

use std::time::{Duration, SystemTime};

use chrono::NaiveDate;
use perf_core::clock::ManualClock;
use perf_cost::{
    prompt_hash, Catalog, CostTracker, GroupBy, RecommendOptions, Recommendations, Usage,
    UsageEvent, UsageReport, Usd,
};

fn tracker() -> (CostTracker, ManualClock) {
    // 2026-11-21T12:00:00Z
    let clock =
        ManualClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_262_400));
    let t = CostTracker::with_options(
        Catalog::builtin().unwrap(),
        clock.clone().shared(),
        chrono_tz::Tz::UTC,
        1000,
    );
    (t, clock)
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

#[test]
fn report_groups_filters_days_and_exports() {
    let (t, clock) = tracker();
    t.track(
        UsageEvent::new("gpt-4o", Usage::new(1_000_000, 0))
            .user("alice")
            .pipeline("search"),
    )
    .unwrap();
    t.track(
        UsageEvent::new("gpt-4o-mini", Usage::new(1_000_000, 0))
            .user("bob,\"jr\"")
            .pipeline("search"),
    )
    .unwrap();
    clock.advance(Duration::from_secs(86_400));
    t.track(
        UsageEvent::new("gpt-4o", Usage::new(0, 100_000))
            .user("alice")
            .pipeline("=cmd()"),
    )
    .unwrap();

    let all = UsageReport::build(&t, GroupBy::User, day(21), day(22));
    assert_eq!(all.total_cost(), Usd::from_cents(250 + 15 + 100));
    assert_eq!(all.rows[0].key, "alice");
    assert_eq!(all.rows[0].cost_usd, "3.500000000");
    let first_day = UsageReport::build(&t, GroupBy::Model, day(21), day(21));
    assert_eq!(first_day.total_cost(), Usd::from_cents(265));
    let by_day = UsageReport::build(&t, GroupBy::Day, day(1), day(30));
    assert_eq!(
        by_day
            .rows
            .iter()
            .map(|r| r.key.as_str())
            .collect::<Vec<_>>(),
        ["2026-11-21", "2026-11-22"]
    );

    let json: serde_json::Value = serde_json::from_str(&all.to_json().unwrap()).unwrap();
    assert_eq!(json["total"]["cost_nanos"], 3_650_000_000i64);
    assert_eq!(json["group_by"], "user");

    let csv = all.to_csv();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "group_by,key,calls,input_tokens,output_tokens,cached_input_tokens,cost_usd"
    );
    assert_eq!(lines[1], "user,alice,2,1000000,100000,0,3.500000000");
    assert_eq!(
        lines[2],
        "user,\"bob,\"\"jr\"\"\",1,1000000,0,0,0.150000000"
    );
    assert_eq!(
        *lines.last().unwrap(),
        "user,TOTAL,3,2000000,100000,0,3.650000000"
    );
    let pipelines = UsageReport::build(&t, GroupBy::Pipeline, day(21), day(22)).to_csv();
    assert!(pipelines.contains("pipeline,'=cmd(),1,"), "{pipelines}");
}

#[test]
fn recommendations_come_from_real_usage() {
    let (t, _) = tracker();
    // The same RAG prompt sent 5 times on gpt-4o without cache reads.
    let h = prompt_hash("Answer using the docs:  ...\n question?");
    for _ in 0..5 {
        t.track(
            UsageEvent::new("gpt-4o", Usage::new(20_000, 500))
                .pipeline("rag")
                .prompt_hash(h),
        )
        .unwrap();
    }
    // Small calls with distinct prompts.
    for i in 0..10 {
        t.track(
            UsageEvent::new("claude-3-haiku-20240307", Usage::new(1000, 100))
                .pipeline("tag")
                .prompt_hash(prompt_hash(&format!("p{i}"))),
        )
        .unwrap();
    }
    let recs = Recommendations::analyze(
        &t,
        &RecommendOptions::new(day(21)).oversized_input_tokens(16_000),
    );

    // Duplicates: one group of 5, avoidable = 4 calls.
    assert_eq!(recs.duplicates.len(), 1);
    let d = &recs.duplicates[0];
    assert_eq!(d.count, 5);
    let one = Catalog::builtin()
        .unwrap()
        .cost("gpt-4o", &Usage::new(20_000, 500))
        .unwrap();
    assert_eq!(d.total_cost, Usd::from_nanos(one.nanos() * 5));
    assert_eq!(d.avoidable_cost, Usd::from_nanos(one.nanos() * 4));
    assert_eq!(d.pipelines, ["rag"]);

    // Oversized: the rag pipeline (20k > 16k), not tag.
    assert_eq!(recs.oversized.len(), 1);
    assert_eq!(recs.oversized[0].pipeline, "rag");
    assert_eq!(recs.oversized[0].oversized_calls, 5);

    // Unused cache: 4 repeats x 20k tokens at $2.50 - $1.25 per M = $0.10.
    assert_eq!(recs.unused_cache.len(), 1);
    assert_eq!(recs.unused_cache[0].repeated_input_tokens, 80_000);
    assert_eq!(recs.unused_cache[0].savings, Usd::from_cents(10));

    // Substitutions: same provider and tier, not retired, savings computed on the real tokens.
    let s = recs
        .substitutions
        .iter()
        .find(|s| s.model == "gpt-4o")
        .unwrap();
    assert_eq!(s.suggested, "gpt-5");
    let cat = Catalog::builtin().unwrap();
    assert_eq!(
        s.suggested_cost,
        cat.cost("gpt-5", &Usage::new(100_000, 2500)).unwrap()
    );
    assert_eq!(s.savings, s.actual_cost - s.suggested_cost);
    // claude-3-haiku is the cheapest small Anthropic model: nothing to suggest.
    assert!(recs
        .substitutions
        .iter()
        .all(|s| s.model != "claude-3-haiku-20240307"));
    // After gpt-5's retirement date, it is no longer suggested.
    let later = Recommendations::analyze(
        &t,
        &RecommendOptions::new(NaiveDate::from_ymd_opt(2026, 12, 12).unwrap()),
    );
    let s = later
        .substitutions
        .iter()
        .find(|s| s.model == "gpt-4o")
        .unwrap();
    assert_ne!(s.suggested, "gpt-5");
}
