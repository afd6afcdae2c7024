//! Fingerprints: golden values (stable across runs and releases of this crate), shape rules,
//! redaction.

use perf_query::{fingerprint, normalize, redact};

/// Pinned fingerprints: a change here changes every stored fingerprint, so it must be a
/// deliberate, documented decision.
#[test]
fn golden_fingerprints() {
    let cases = [
        ("SELECT * FROM users WHERE id = 1", "e644fbadbe3b6014"),
        (
            "SELECT * FROM orders WHERE customer_id = ANY($1)",
            "6bd554a09f3412a2",
        ),
        (
            "INSERT INTO events (kind, payload) VALUES ('a', '{}')",
            "779ddaa89e41c64d",
        ),
    ];
    let got: Vec<String> = cases
        .iter()
        .map(|(sql, _)| fingerprint(sql).unwrap().to_string())
        .collect();
    let expected: Vec<&str> = cases.iter().map(|(_, fp)| *fp).collect();
    assert_eq!(got, expected);
}

#[test]
fn literal_values_share_a_fingerprint() {
    let a = fingerprint("SELECT * FROM users WHERE id = 1").unwrap();
    for variant in [
        "SELECT * FROM users WHERE id = 2",
        "select *\n  from users\n where id=42;",
        "SELECT * FROM users WHERE id = $1",
        "SELECT * FROM \"users\" WHERE \"id\" = -7 /* trailing comment */",
    ] {
        assert_eq!(fingerprint(variant).unwrap(), a, "{variant}");
    }
    assert_ne!(fingerprint("SELECT * FROM users WHERE id > 1").unwrap(), a);
    assert_ne!(
        fingerprint("SELECT * FROM users WHERE email = 1").unwrap(),
        a
    );
}

#[test]
fn in_lists_of_any_length_collapse() {
    let one = fingerprint("SELECT * FROM users WHERE id IN (1)").unwrap();
    let many = fingerprint("SELECT * FROM users WHERE id IN (1, 2, 3, $4, 'x')").unwrap();
    assert_eq!(one, many);
    assert_eq!(
        normalize("SELECT * FROM users WHERE id IN (1, 2, 3) OR id IN ($1)")
            .unwrap()
            .text,
        "SELECT * FROM users WHERE id IN ($1 /*, ... */) OR id IN ($2 /*, ... */)"
    );
}

#[test]
fn batched_rewrite_has_its_own_fingerprint() {
    let per_row = normalize("SELECT * FROM order_lines WHERE order_id = $1").unwrap();
    let batched = normalize("SELECT * FROM order_lines WHERE order_id = ANY($1)").unwrap();
    assert_ne!(per_row.fingerprint, batched.fingerprint);
    assert!(!per_row.batched);
    assert!(batched.batched);
}

#[test]
fn redaction_removes_every_literal() {
    let sql = "SELECT * FROM users WHERE email = 'alice@example.com' AND pin = 1234 \
               AND note = $$dollar secret$$ AND blob = E'\\x41' AND flag = true AND x = -3.5";
    let shown = redact(sql).unwrap();
    for secret in ["alice", "1234", "dollar", "x41", "true", "3.5"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert_eq!(
        shown,
        "SELECT * FROM users WHERE email = $1 AND pin = $2 AND note = $3 AND blob = $4 AND flag = $5 AND x = $6"
    );
}
