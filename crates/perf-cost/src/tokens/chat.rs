//! Chat-format overheads and the tool-definition estimate.
//!
//! Messages follow the OpenAI cookbook ("How to count tokens with tiktoken"): every message costs
//! 3 tokens of framing plus its role and content, a `name` costs 1 more, and every reply is primed
//! with 3 tokens. The old `gpt-3.5-turbo-0301` used 4 per message and -1 for a name.
//!
//! Tool definitions: OpenAI does not publish how they are rendered into the prompt. perf-cost uses
//! the widely used reverse-engineered rendering (a TypeScript-like `namespace functions { ... }`
//! block, as in the `openai-chat-tokens` package): each function becomes
//! `// description\ntype name = (_: {\n// param description\nparam?: type,\n}) => any;`, the block
//! is counted with the model's encoding, plus 9 tokens of framing, minus 4 when a system message
//! exists (the block is merged into it). The result is an **estimate** and is marked as one.

use serde::{Deserialize, Serialize};

use super::encoder::Encoder;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, ...
    pub role: String,
    /// The text content.
    pub content: String,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A message without a name.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            name: None,
        }
    }

    /// Sets the participant name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// A function tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    /// Function name.
    pub name: String,
    /// Function description.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON schema of the parameters (an `object` schema).
    #[serde(default)]
    pub parameters: serde_json::Value,
}

fn overheads(model: &str) -> (i64, i64) {
    if model.starts_with("gpt-3.5-turbo-0301") {
        (4, -1)
    } else {
        (3, 1)
    }
}

pub(crate) fn count_chat(
    encoder: &Encoder,
    model: &str,
    messages: &[ChatMessage],
    tools: &[ToolDefinition],
) -> u64 {
    let (per_message, per_name) = overheads(model);
    let mut total: i64 = 3; // reply priming
    for m in messages {
        total += per_message;
        total += encoder.count(&m.role) as i64;
        total += encoder.count(&m.content) as i64;
        if let Some(name) = &m.name {
            total += encoder.count(name) as i64 + per_name;
        }
    }
    if !tools.is_empty() {
        total += encoder.count(&render_tools(tools)) as i64 + 9;
        if messages.iter().any(|m| m.role == "system") {
            total -= 4;
        }
    }
    u64::try_from(total.max(0)).unwrap_or(0)
}

/// Renders tool definitions in the TypeScript-like namespace format (see the module docs).
pub(crate) fn render_tools(tools: &[ToolDefinition]) -> String {
    let mut out = String::from("# Tools\n\n## functions\n\nnamespace functions {\n\n");
    for tool in tools {
        if let Some(d) = &tool.description {
            out.push_str("// ");
            out.push_str(d);
            out.push('\n');
        }
        out.push_str("type ");
        out.push_str(&tool.name);
        out.push_str(" = (");
        let props = tool
            .parameters
            .get("properties")
            .and_then(|p| p.as_object());
        if let Some(props) = props.filter(|p| !p.is_empty()) {
            out.push_str("_: {\n");
            render_properties(&mut out, props, &tool.parameters, 0);
            out.push('}');
        }
        out.push_str(") => any;\n\n");
    }
    out.push_str("} // namespace functions");
    out
}

fn render_properties(
    out: &mut String,
    props: &serde_json::Map<String, serde_json::Value>,
    schema: &serde_json::Value,
    depth: usize,
) {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    for (name, prop) in props {
        if let Some(d) = prop.get("description").and_then(|d| d.as_str()) {
            out.push_str(&"  ".repeat(depth));
            out.push_str("// ");
            out.push_str(d);
            out.push('\n');
        }
        out.push_str(&"  ".repeat(depth));
        out.push_str(name);
        if !required.contains(&name.as_str()) {
            out.push('?');
        }
        out.push_str(": ");
        render_type(out, prop, depth);
        out.push_str(",\n");
    }
}

fn render_type(out: &mut String, prop: &serde_json::Value, depth: usize) {
    if let Some(values) = prop.get("enum").and_then(|e| e.as_array()) {
        let rendered: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        out.push_str(&rendered.join(" | "));
        return;
    }
    match prop.get("type").and_then(|t| t.as_str()) {
        Some("string") => out.push_str("string"),
        Some("number") | Some("integer") => out.push_str("number"),
        Some("boolean") => out.push_str("boolean"),
        Some("null") => out.push_str("null"),
        Some("array") => {
            match prop.get("items") {
                Some(items) => render_type(out, items, depth),
                None => out.push_str("any"),
            }
            out.push_str("[]");
        }
        Some("object") => match prop.get("properties").and_then(|p| p.as_object()) {
            Some(inner) if !inner.is_empty() => {
                out.push_str("{\n");
                render_properties(out, inner, prop, depth + 1);
                out.push_str(&"  ".repeat(depth));
                out.push('}');
            }
            _ => out.push_str("object"),
        },
        _ => out.push_str("any"),
    }
}
