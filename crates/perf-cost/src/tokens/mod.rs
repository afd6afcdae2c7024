//! Token counting: shared encoders, the model table, chat overheads and early-stop counting.

mod backtrack;
mod bpe;
pub mod chat;
mod counter;
mod encoder;
mod model;
mod pretokenize;

pub use chat::{ChatMessage, ToolDefinition};
pub use counter::{TokenCount, TokenCounter};
pub use encoder::{Encoder, Encoding};
pub use model::{encoding_for_model, Accuracy, EncodingSource, ModelEncoding};
