//! Token budget enforcement: cuts at token boundaries, per-part and total budgets, chat fitting.

use perf_cost::trim::{fit_chat, fit_parts, truncate_tokens, Keep, PromptPart};
use perf_cost::{ChatMessage, Encoding, TokenCounter};

fn corpus() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    [
        "english.txt",
        "code.txt",
        "cjk.txt",
        "emoji.txt",
        "whitespace.txt",
    ]
    .iter()
    .map(|f| String::from_utf8(std::fs::read(dir.join(f)).unwrap()).unwrap())
    .collect()
}

#[test]
fn truncation_fits_and_keeps_the_right_end() {
    let enc = Encoding::O200kBase.encoder().unwrap();
    let text = corpus();
    let full = enc.count(&text) as u64;
    for max in [0u64, 1, 2, 3, 7, 50, 333, full - 1] {
        let (head, n) = truncate_tokens(enc, &text, max, Keep::Start);
        assert!(n <= max, "start {max}: {n}");
        assert!(text.starts_with(&head));
        assert_eq!(n, enc.count(&head) as u64);
        let (tail, n) = truncate_tokens(enc, &text, max, Keep::End);
        assert!(n <= max, "end {max}: {n}");
        assert!(text.ends_with(&tail));
        // Cutting at token boundaries loses little: at most a few tokens below the budget
        // (a token that ends inside a multi-byte character is dropped whole).
        if max >= 7 {
            let (head, n) = truncate_tokens(enc, &text, max, Keep::Start);
            assert!(n + 4 >= max, "start {max}: only {n} kept of {head:?}");
        }
    }
    let (same, n) = truncate_tokens(enc, &text, full, Keep::Start);
    assert_eq!((same.len(), n), (text.len(), full));
}

#[test]
fn multibyte_tokens_are_never_split_into_invalid_text() {
    let enc = Encoding::Cl100kBase.encoder().unwrap();
    // cl100k splits many CJK characters and emoji into several byte tokens.
    let text = "東京🚀👨‍👩‍👧‍👦한국어".repeat(10);
    for max in 0..40u64 {
        for keep in [Keep::Start, Keep::End] {
            let (cut, n) = truncate_tokens(enc, &text, max, keep);
            assert!(n <= max);
            assert!(text.contains(&cut));
        }
    }
}

#[test]
fn parts_are_cut_by_their_own_budget_then_by_priority() {
    let enc = Encoding::O200kBase.encoder().unwrap();
    let parts = vec![
        PromptPart::new("system", "You are a careful assistant.").required(),
        PromptPart::new("examples", "example ".repeat(300))
            .max_tokens(100)
            .priority(2),
        PromptPart::new("history", "older turn. ".repeat(200))
            .priority(1)
            .keep(Keep::End),
        PromptPart::new("question", "What changed?").required(),
    ];
    let fitted = fit_parts(enc, parts, 250);
    assert!(fitted.fits);
    assert!(fitted.total_tokens <= 250);
    let by_name = |n: &str| fitted.parts.iter().find(|p| p.name == n).unwrap();
    assert!(by_name("examples").cut_by_part_budget);
    assert_eq!(by_name("examples").tokens, 100);
    // History (lower priority) absorbed the total cut; examples kept their 100.
    assert!(by_name("history").cut_by_total);
    assert!(!by_name("examples").cut_by_total);
    assert!(by_name("history").text.ends_with("older turn. "));
    assert_eq!(by_name("system").removed_tokens(), 0);
    let cut: Vec<_> = fitted.cut().map(|p| p.name.as_str()).collect();
    assert_eq!(cut, ["examples", "history"]);
    // A budget smaller than the required parts cannot fit, and says so.
    let tiny = fit_parts(
        enc,
        vec![
            PromptPart::new("q", "a b c d e f").required(),
            PromptPart::new("x", "y"),
        ],
        2,
    );
    assert!(!tiny.fits);
    assert!(tiny.parts[1].dropped());
}

#[test]
fn chat_history_drops_oldest_messages_first() {
    let c = TokenCounter::new();
    let mut msgs = vec![ChatMessage::new("system", "You are terse.")];
    for i in 0..10 {
        msgs.push(ChatMessage::new(
            if i % 2 == 0 { "user" } else { "assistant" },
            format!("turn {i}: {}", "blah ".repeat(10)),
        ));
    }
    let full = c.count_chat("gpt-4o", &msgs, &[]).unwrap().tokens;
    let fitted = fit_chat(&c, "gpt-4o", &msgs, full / 2).unwrap();
    assert!(fitted.fits);
    assert_eq!(
        fitted.tokens,
        c.count_chat("gpt-4o", &fitted.messages, &[])
            .unwrap()
            .tokens
    );
    assert!(fitted.tokens <= full / 2);
    assert_eq!(fitted.messages[0].role, "system");
    assert_eq!(
        fitted.dropped,
        (1..=fitted.dropped.len()).collect::<Vec<_>>()
    );
    assert_eq!(fitted.messages.len() + fitted.dropped.len(), msgs.len());
    let impossible = fit_chat(&c, "gpt-4o", &msgs, 5).unwrap();
    assert!(!impossible.fits);
    assert_eq!(impossible.messages.len(), 2); // system + last
}

#[test]
fn truncation_inside_one_long_piece_cuts_at_its_token_boundaries() {
    // Pieces of 128 bytes or more take the backtracking encoder; its token ends must be the ones
    // tiktoken-rs produces, so a cut keeps whole tokens and loses almost nothing of the budget.
    let enc = Encoding::O200kBase.encoder().unwrap();
    let tk = tiktoken_rs::o200k_base_singleton();
    let letters: String = (0..40_000u64)
        .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) % 26) as u8))
        .collect();
    for (what, text) in [
        ("repeated 'ab'", "ab".repeat(20_000)),
        ("letters", letters),
        ("CJK", "中文字".repeat(5_000)),
    ] {
        for max in [1u64, 100, 1000, 5000] {
            for keep in [Keep::Start, Keep::End] {
                let (cut, n) = truncate_tokens(enc, &text, max, keep);
                assert!(n <= max, "{what} {keep:?} {max}: {n}");
                assert!(n + 2 >= max, "{what} {keep:?} {max}: only {n}");
                assert_eq!(n as usize, tk.encode_ordinary(&cut).len(), "{what}");
                match keep {
                    Keep::Start => assert!(text.starts_with(&cut)),
                    Keep::End => assert!(text.ends_with(&cut)),
                }
            }
        }
    }
}
