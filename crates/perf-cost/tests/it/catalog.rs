//! Pricing catalog: the built-in data, exact money, overrides, unknown models, parse errors.

use perf_cost::{Catalog, CostError, PerMillion, Usage, Usd};

#[test]
fn builtin_catalog_has_the_required_models() {
    let cat = Catalog::builtin().unwrap();
    assert!(cat.len() >= 25, "{}", cat.len());
    assert_eq!(cat.as_of().unwrap().to_string(), "2026-11-21");
    for m in [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-5",
        "o3",
        "o4-mini",
        "gpt-4",
        "gpt-3.5-turbo",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-opus-4-5",
        "claude-3-opus-20240229",
        "claude-3-sonnet-20240229",
        "claude-3-haiku-20240307",
        "gemini-2.5-pro",
        "gemini-pro",
    ] {
        assert!(cat.contains(m), "{m}");
    }
    let providers: std::collections::BTreeSet<_> =
        cat.models().map(|m| m.provider.as_str()).collect();
    assert_eq!(
        providers.into_iter().collect::<Vec<_>>(),
        ["anthropic", "google", "openai"]
    );
}

#[test]
fn prices_match_the_pricing_facts() {
    let cat = Catalog::builtin().unwrap();
    let p = cat.get("gpt-4o-mini").unwrap();
    assert_eq!(p.input, PerMillion::from_micros(150_000));
    assert_eq!(p.cached_input, Some(PerMillion::from_micros(75_000)));
    let c = cat.get("claude-3-7-sonnet-20250219").unwrap();
    assert_eq!(c.cache_write, Some(PerMillion::from_micros(3_750_000)));
    assert_eq!(cat.get("gpt-4.1").unwrap().context_window, 1_047_576);
    // Aliases and provider-qualified names.
    assert_eq!(
        cat.get("claude-sonnet-4-5-20250929").unwrap().model,
        "claude-sonnet-4-5"
    );
    assert_eq!(cat.get("openai/gpt-4o").unwrap().model, "gpt-4o");
}

#[test]
fn costs_are_exact_and_do_not_drift() {
    let cat = Catalog::builtin().unwrap();
    // 1 token of gpt-5-nano input is 0.05 micro-dollars = 50 nano-dollars.
    assert_eq!(
        cat.cost("gpt-5-nano", &Usage::new(1, 0)).unwrap(),
        Usd::from_nanos(50)
    );
    // A million one-token calls add up to exactly the price of a million tokens.
    let one = cat.cost("gpt-4o-mini", &Usage::new(1, 0)).unwrap();
    let total: Usd = (0..1_000_000).map(|_| one).sum();
    assert_eq!(
        total,
        cat.cost("gpt-4o-mini", &Usage::new(1_000_000, 0)).unwrap()
    );
    assert_eq!(total, Usd::from_cents(15));
}

#[test]
fn cached_batch_and_long_context_prices() {
    let cat = Catalog::builtin().unwrap();
    let p = cat.get("gpt-4o").unwrap();
    // 1M prompt tokens of which 400k cached: 600k * 2.50 + 400k * 1.25 = 1.50 + 0.50.
    assert_eq!(
        p.cost(&Usage::new(1_000_000, 0).with_cached(400_000)),
        Usd::from_cents(200)
    );
    let batch = Usage {
        batch: true,
        ..Usage::new(1_000_000, 1_000_000)
    };
    assert_eq!(p.cost(&batch), Usd::from_cents(125 + 500));
    // Anthropic cache writes cost more than input.
    let s = cat.get("claude-sonnet-4-5").unwrap();
    let w = Usage {
        cache_write: 1_000_000,
        ..Usage::new(1_000_000, 0)
    };
    assert_eq!(s.cost(&w), Usd::from_cents(375));
    // Gemini 2.5 Pro above 200k input tokens: the whole call at the higher tier.
    let g = cat.get("gemini-2.5-pro").unwrap();
    assert_eq!(g.cost(&Usage::new(200_000, 0)), Usd::from_cents(25));
    assert_eq!(
        g.cost(&Usage::new(200_001, 0)),
        Usd::from_nanos(500_002_500)
    );
    assert_eq!(
        g.cost(&Usage::new(300_000, 100_000)),
        Usd::from_cents(75 + 150)
    );
}

#[test]
fn unknown_model_is_a_typed_error_unless_a_fallback_is_configured() {
    let cat = Catalog::builtin().unwrap();
    match cat.cost("llama-99", &Usage::new(10, 10)) {
        Err(CostError::UnknownModel { model }) => assert_eq!(model, "llama-99"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        cat.clone().with_fallback("nope"),
        Err(CostError::UnknownModel { .. })
    ));
    let cat = cat.with_fallback("gpt-4o").unwrap();
    assert_eq!(
        cat.cost("llama-99", &Usage::new(1_000_000, 0)).unwrap(),
        Usd::from_cents(250)
    );
}

#[test]
fn user_file_overrides_and_extends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.toml");
    std::fs::write(
        &path,
        r#"
as_of = "2026-11-22"
[models."gpt-4o"]
provider = "openai"
tier = "frontier"
input = 2.0
output = "9"
context_window = 128000

[models."my-finetune"]
provider = "self-hosted"
input = "0.000001"
output = 0
context_window = 4096
"#,
    )
    .unwrap();
    let cat = Catalog::builtin_with_overrides(&path).unwrap();
    assert_eq!(
        cat.get("gpt-4o").unwrap().input,
        PerMillion::from_micros(2_000_000)
    );
    assert_eq!(cat.get("gpt-4o").unwrap().cached_input, None);
    assert_eq!(
        cat.get("my-finetune").unwrap().input,
        PerMillion::from_micros(1)
    );
    assert!(cat.contains("claude-haiku-4-5"));
    assert_eq!(cat.as_of().unwrap().to_string(), "2026-11-22");
}

fn parse_err(toml: &str) -> (String, String, String) {
    match Catalog::from_toml_str(toml, "user.toml") {
        Err(CostError::Catalog {
            model,
            field,
            reason,
            source_name,
        }) => {
            assert_eq!(source_name, "user.toml");
            (model, field, reason)
        }
        other => panic!("expected a catalog error, got {other:?}"),
    }
}

#[test]
fn parse_errors_name_the_model_and_field() {
    let base = "provider = \"openai\"\ncontext_window = 100\n";
    let (m, f, _) = parse_err(&format!(
        "[models.a]\n{base}input = \"1.5\"\noutput = \"x\"\n"
    ));
    assert_eq!((m.as_str(), f.as_str()), ("a", "output"));
    let (m, f, _) = parse_err(&format!("[models.b]\n{base}output = 1\n"));
    assert_eq!((m.as_str(), f.as_str()), ("b", "input"));
    let (m, f, r) = parse_err(&format!("[models.c]\n{base}input = -1\noutput = 1\n"));
    assert_eq!((m.as_str(), f.as_str()), ("c", "input"), "{r}");
    let (m, f, _) = parse_err(&format!(
        "[models.d]\n{base}input = \"0.0000001\"\noutput = 1\n"
    ));
    assert_eq!((m.as_str(), f.as_str()), ("d", "input"));
    let (m, f, _) = parse_err(&format!(
        "[models.e]\n{base}input = 1\noutput = 1\ndeprecation = \"soon\"\n"
    ));
    assert_eq!((m.as_str(), f.as_str()), ("e", "deprecation"));
    let (m, f, _) = parse_err(&format!(
        "[models.g]\n{base}input = 1\noutput = 1\nimput = 2\n"
    ));
    assert_eq!((m.as_str(), f.as_str()), ("g", "imput"));
    let (m, f, _) = parse_err(&format!(
        "[models.h]\n{base}input = 1\noutput = 1\nlong_context = {{ threshold = 10, input = 2 }}\n"
    ));
    assert_eq!((m.as_str(), f.as_str()), ("h", "long_context.output"));
    let (m, f, _) = parse_err("[models.i]\ninput = 1\noutput = 1\ncontext_window = 5\n");
    assert_eq!((m.as_str(), f.as_str()), ("i", "provider"));
    let (_, f, _) = parse_err("fallback = \"zzz\"\n[models.j]\nprovider = \"p\"\ninput = 1\noutput = 1\ncontext_window = 5\n");
    assert_eq!(f, "fallback");
    let (m, f, _) = parse_err("this is not toml");
    assert_eq!((m.as_str(), f.as_str()), ("", ""));
}
