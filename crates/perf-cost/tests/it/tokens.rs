//! Token counting: golden counts from OpenAI's Python tiktoken, early stop, model table, chat.

use perf_cost::{Accuracy, ChatMessage, Encoding, EncodingSource, TokenCounter, ToolDefinition};
use perf_testkit::lcg_text as pseudo_random;

fn data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn golden() -> serde_json::Value {
    let text = std::fs::read_to_string(data_dir().join("golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The text of one golden case: a corpus file (read as bytes, so CRLF is kept), a generated run
/// or generated pseudo-random text.
fn case_text(case: &serde_json::Value) -> (String, String) {
    if let Some(file) = case["file"].as_str() {
        let bytes = std::fs::read(data_dir().join(file)).unwrap();
        (file.to_owned(), String::from_utf8(bytes).unwrap())
    } else if let Some(alphabet) = case["random"].as_str() {
        let n = case["chars"].as_u64().unwrap() as usize;
        let seed = case["seed"].as_u64().unwrap();
        (
            format!("random {n} chars of {alphabet:?}, seed {seed}"),
            pseudo_random(alphabet, n, seed),
        )
    } else {
        let ch = case["repeat"].as_str().unwrap();
        let times = case["times"].as_u64().unwrap() as usize;
        let suffix = case["suffix"].as_str().unwrap_or("");
        (
            format!("{ch:?} x {times} + {suffix:?}"),
            ch.repeat(times) + suffix,
        )
    }
}

#[test]
fn counts_equal_python_tiktoken_golden_counts() {
    let golden = golden();
    let mut checked = 0;
    for case in golden["cases"].as_array().unwrap() {
        let (name, text) = case_text(case);
        for (enc_name, expected) in case["counts"].as_object().unwrap() {
            let enc = Encoding::from_name(enc_name).unwrap().encoder().unwrap();
            assert_eq!(
                enc.count(&text) as u64,
                expected.as_u64().unwrap(),
                "{name} with {enc_name}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "golden file has too few cases: {checked}");
}

#[test]
fn corpus_counts_equal_tiktoken_rs_encode_ordinary() {
    // Our counter must agree with tiktoken-rs where tiktoken-rs works (it panics on very long
    // whitespace runs, so only the corpus files are compared).
    for file in [
        "english.txt",
        "code.txt",
        "cjk.txt",
        "emoji.txt",
        "whitespace.txt",
    ] {
        let text = String::from_utf8(std::fs::read(data_dir().join(file)).unwrap()).unwrap();
        let ours = Encoding::O200kBase.encoder().unwrap().count(&text);
        let theirs = tiktoken_rs::o200k_base_singleton()
            .encode_ordinary(&text)
            .len();
        assert_eq!(ours, theirs, "{file} o200k");
        let ours = Encoding::Cl100kBase.encoder().unwrap().count(&text);
        let theirs = tiktoken_rs::cl100k_base_singleton()
            .encode_ordinary(&text)
            .len();
        assert_eq!(ours, theirs, "{file} cl100k");
    }
}

#[test]
fn every_prefix_of_the_corpus_matches_tiktoken_rs() {
    // Cutting the mixed corpus at every char boundary exercises piece edges (whitespace runs that
    // end at the text end, CRLF, combining marks).
    let mut text = String::new();
    for file in [
        "english.txt",
        "code.txt",
        "cjk.txt",
        "emoji.txt",
        "whitespace.txt",
    ] {
        text.push_str(&String::from_utf8(std::fs::read(data_dir().join(file)).unwrap()).unwrap());
    }
    let enc = Encoding::O200kBase.encoder().unwrap();
    let tk = tiktoken_rs::o200k_base_singleton();
    let mut checked = 0;
    for (i, _) in text.char_indices().step_by(7) {
        let window = &text[i.saturating_sub(0)..];
        let end = window
            .char_indices()
            .nth(200)
            .map_or(window.len(), |(j, _)| j);
        let slice = &window[..end];
        assert_eq!(
            enc.count(slice),
            tk.encode_ordinary(slice).len(),
            "at byte {i}: {slice:?}"
        );
        checked += 1;
    }
    assert!(checked > 500);
}

#[test]
fn long_whitespace_runs_count_without_failing() {
    // tiktoken-rs 0.12 and Python tiktoken both panic here (fancy-regex StackOverflow), so there is
    // no golden count at 1 MiB (the golden file checks runs up to 256 KiB). 1 MiB of spaces must
    // count, and follow tiktoken's rule: a run before a word gives its last space to the word.
    let enc = Encoding::O200kBase.encoder().unwrap();
    let spaces = " ".repeat(1 << 20);
    let n = enc.count(&spaces);
    assert!(n > 0 && n < spaces.len());
    let mixed = format!("{spaces}x");
    // The run before a word gives its last space to the word: count = run-minus-one + " x".
    assert_eq!(enc.count(&mixed), enc.count(&spaces[1..]) + 1);
}

/// Texts pre-tokenization cannot split (one piece each, or few long ones), 64 KiB or so.
fn adversarial_texts() -> Vec<(&'static str, String)> {
    vec![
        ("one repeated char", "a".repeat(1 << 16)),
        ("repeated 'ab'", "ab".repeat(1 << 15)),
        ("repeated 'abc'", "abc".repeat(21_845)),
        ("repeated 'aab'", "aab".repeat(21_845)),
        (
            "random letters",
            pseudo_random("abcdefghijklmnopqrstuvwxyz", 1 << 16, 11),
        ),
        ("random over 'ab'", pseudo_random("ab", 1 << 16, 12)),
        ("digits", pseudo_random("0123456789", 1 << 16, 13)),
        ("spaces then a word", " ".repeat(1 << 15) + "word"),
        ("mixed whitespace", pseudo_random(" \t\n\r", 1 << 15, 14)),
        (
            "CJK without spaces",
            pseudo_random(
                "的一是不了人我在有他这中大来上国个到说们为子和你地出道也時年得",
                1 << 14,
                15,
            ),
        ),
        ("accented letters", pseudo_random("éèañöß", 1 << 15, 16)),
    ]
}

#[test]
fn long_pieces_count_exactly_like_tiktoken_rs() {
    // Long pieces take the backtracking encoder; tiktoken-rs takes its heap merge. Counts, early
    // stop at the exact count and one below it, and the trimming boundaries must all agree.
    for (encoding, tk) in [
        (Encoding::O200kBase, tiktoken_rs::o200k_base_singleton()),
        (Encoding::Cl100kBase, tiktoken_rs::cl100k_base_singleton()),
    ] {
        let enc = encoding.encoder().unwrap();
        for (what, text) in adversarial_texts() {
            let expected = tk.encode_ordinary(&text).len();
            assert_eq!(enc.count(&text), expected, "{what}, {encoding}");
            assert_eq!(
                enc.count_till_limit(&text, expected),
                Some(expected),
                "{what}, {encoding}"
            );
            assert_eq!(
                enc.count_till_limit(&text, expected - 1),
                None,
                "{what}, {encoding}"
            );
        }
    }
}

#[test]
fn count_till_limit_stops_at_the_limit() {
    let enc = Encoding::O200kBase.encoder().unwrap();
    let text = std::fs::read_to_string(data_dir().join("english.txt")).unwrap();
    let full = enc.count(&text);
    assert_eq!(enc.count_till_limit(&text, full), Some(full));
    assert_eq!(enc.count_till_limit(&text, full - 1), None);
    assert_eq!(enc.count_till_limit(&text, 0), None);
    assert_eq!(enc.count_till_limit("", 0), Some(0));
    // A single huge piece is rejected by its lower bound without merging it.
    let huge = "a".repeat(1 << 20);
    assert_eq!(enc.count_till_limit(&huge, 100), None);
}

#[test]
fn model_table_matches_tiktoken() {
    let c = TokenCounter::new();
    for (model, enc) in [
        ("gpt-5", Encoding::O200kBase),
        ("gpt-5-mini-2025-08-07", Encoding::O200kBase),
        ("gpt-4.5-preview", Encoding::O200kBase),
        ("gpt-4.1-nano", Encoding::O200kBase),
        ("gpt-4o", Encoding::O200kBase),
        ("chatgpt-4o-latest", Encoding::O200kBase),
        ("o1", Encoding::O200kBase),
        ("o3-mini", Encoding::O200kBase),
        ("o4-mini", Encoding::O200kBase),
        ("ft:gpt-4o-2024-08-06:acme::x1", Encoding::O200kBase),
        ("gpt-4", Encoding::Cl100kBase),
        ("gpt-4-turbo", Encoding::Cl100kBase),
        ("gpt-3.5-turbo-0125", Encoding::Cl100kBase),
        ("text-embedding-3-small", Encoding::Cl100kBase),
        ("text-embedding-ada-002", Encoding::Cl100kBase),
        ("gpt-oss-120b", Encoding::O200kHarmony),
        ("openai/gpt-4o-mini", Encoding::O200kBase),
    ] {
        let r = c.resolve(model);
        assert_eq!(
            (r.encoding, r.source),
            (enc, EncodingSource::Known),
            "{model}"
        );
    }
    assert_eq!(c.warned_models(), 0);
}

#[test]
fn unknown_models_fall_back_with_one_warning_each() {
    let c = TokenCounter::with_default_encoding(Encoding::Cl100kBase);
    for _ in 0..3 {
        let n = c.count("my-local-llm", "hello world").unwrap();
        assert_eq!(n.encoding, Encoding::Cl100kBase);
        assert_eq!(n.accuracy, Accuracy::Estimate);
    }
    c.count("other-llm", "x").unwrap();
    assert_eq!(c.warned_models(), 2);
}

#[test]
fn anthropic_and_google_counts_are_estimates_without_warning() {
    let c = TokenCounter::new();
    for model in [
        "claude-sonnet-4-5",
        "claude-3-haiku-20240307",
        "gemini-2.5-pro",
    ] {
        let n = c.count(model, "Hello there").unwrap();
        assert!(n.is_estimate(), "{model}");
        assert_eq!(c.resolve(model).source, EncodingSource::ProviderEstimate);
    }
    assert_eq!(c.warned_models(), 0);
}

#[test]
fn chat_counts_equal_the_cookbook_formula_golden() {
    let golden = golden();
    let c = TokenCounter::new();
    for chat in golden["chats"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = serde_json::from_value(chat["messages"].clone()).unwrap();
        for (enc_name, expected) in chat["counts"].as_object().unwrap() {
            let model = if enc_name == "cl100k_base" {
                "gpt-4"
            } else {
                "gpt-4o"
            };
            let n = c.count_chat(model, &messages, &[]).unwrap();
            assert_eq!(
                n.tokens,
                expected.as_u64().unwrap(),
                "{} {enc_name}",
                chat["name"]
            );
            assert_eq!(n.accuracy, Accuracy::Exact);
        }
    }
}

#[test]
fn chat_name_and_legacy_overheads() {
    let c = TokenCounter::new();
    let plain = [ChatMessage::new("user", "hi")];
    let named = [ChatMessage::new("user", "hi").with_name("bob")];
    let base = c.count_chat("gpt-4", &plain, &[]).unwrap().tokens;
    let bob = c.count("gpt-4", "bob").unwrap().tokens;
    assert_eq!(
        c.count_chat("gpt-4", &named, &[]).unwrap().tokens,
        base + bob + 1
    );
    // gpt-3.5-turbo-0301: 4 per message, -1 for a name.
    assert_eq!(
        c.count_chat("gpt-3.5-turbo-0301", &plain, &[])
            .unwrap()
            .tokens,
        base + 1
    );
    assert_eq!(
        c.count_chat("gpt-3.5-turbo-0301", &named, &[])
            .unwrap()
            .tokens,
        base + 1 + bob - 1
    );
}

#[test]
fn tools_are_counted_and_marked_as_estimates() {
    let c = TokenCounter::new();
    let msgs = [ChatMessage::new("user", "What's the weather in Paris?")];
    let tool = ToolDefinition {
        name: "get_weather".into(),
        description: Some("Get the current weather for a city".into()),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
            },
            "required": ["city"]
        }),
    };
    let without = c.count_chat("gpt-4o", &msgs, &[]).unwrap();
    let with = c
        .count_chat("gpt-4o", &msgs, std::slice::from_ref(&tool))
        .unwrap();
    assert!(
        with.tokens > without.tokens + 20,
        "{} vs {}",
        with.tokens,
        without.tokens
    );
    assert_eq!(with.accuracy, Accuracy::Estimate);
}

#[test]
fn encoders_are_shared_across_threads() {
    let a = Encoding::O200kBase.encoder().unwrap() as *const _ as usize;
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let e = Encoding::O200kBase.encoder().unwrap();
                (e as *const _ as usize, e.count("shared across threads"))
            })
        })
        .collect();
    for h in handles {
        let (ptr, n) = h.join().unwrap();
        assert_eq!(ptr, a);
        assert_eq!(n, 3);
    }
}
