//! Every operator on every JSON type, the combinators, parsing errors, and
//! properties over random values.

use super::lint::contradictions;
use super::*;
use proptest::prelude::*;
use serde_json::json;

fn test_of(condition: Value) -> Test {
    parse_test(&condition, "x").unwrap_or_else(|e| panic!("{condition}: {e:?}"))
}

fn holds(condition: Value, value: Option<Value>) -> bool {
    test_of(condition).holds(value.as_ref())
}

/// One sample of every JSON type, plus the absent value.
fn samples() -> Vec<(&'static str, Option<Value>)> {
    vec![
        ("absent", None),
        ("null", Some(Value::Null)),
        ("bool", Some(json!(true))),
        ("int", Some(json!(7))),
        ("huge", Some(json!(u64::MAX))),
        ("float", Some(json!(-2.5))),
        ("string", Some(json!("grüße/日本"))),
        ("array", Some(json!([1, "a"]))),
        ("object", Some(json!({"a": 1}))),
    ]
}

#[test]
fn typed_operators_never_match_other_types_or_absent_values() {
    let typed: Vec<(Value, &[&str])> = vec![
        (json!({"gt": 0}), &["int", "huge"]),
        (json!({"lt": 0}), &["float"]),
        (json!({"gte": "2020-01-01T00:00:00Z"}), &[]),
        (json!({"starts_with": "g"}), &["string"]),
        (json!({"ends_with": "本"}), &["string"]),
        (json!({"contains": "/"}), &["string"]),
        (json!({"contains": 1}), &["array"]),
        (json!({"matches": ".*"}), &["string"]),
        (json!({"cidr": "0.0.0.0/0"}), &[]),
        (json!({"glob": "**"}), &["string"]),
        (
            json!({"exists": true}),
            &[
                "null", "bool", "int", "huge", "float", "string", "array", "object",
            ],
        ),
        (json!({"exists": false}), &["absent"]),
    ];
    for (condition, matching) in typed {
        for (kind, value) in samples() {
            assert_eq!(
                holds(condition.clone(), value),
                matching.contains(&kind),
                "{condition} on {kind}"
            );
        }
    }
}

#[test]
fn equality_is_total_but_needs_a_present_value() {
    for (kind, value) in samples() {
        let Some(present) = value.clone() else {
            for op in ["eq", "ne", "in", "not_in"] {
                let operand = if op.ends_with("in") {
                    json!([1])
                } else {
                    json!(1)
                };
                assert!(!holds(json!({op: operand}), None), "{op} on absent");
            }
            continue;
        };
        assert!(
            holds(json!({"eq": present.clone()}), value.clone()),
            "eq {kind}"
        );
        assert!(
            !holds(json!({"ne": present.clone()}), value.clone()),
            "ne {kind}"
        );
        assert!(
            holds(json!({"in": ["other", present.clone()]}), value.clone()),
            "in {kind}"
        );
        assert!(
            !holds(json!({"not_in": [present.clone()]}), value.clone()),
            "not_in {kind}"
        );
        // A value of another type is simply unequal.
        assert!(
            holds(json!({"ne": "zzz"}), value.clone()) || kind == "string",
            "ne {kind}"
        );
    }
    // The scalar form is equality; numbers compare by value.
    assert!(holds(json!(1), Some(json!(1.0))));
    assert!(holds(json!({"in": [1.5, 2]}), Some(json!(2.0))));
    assert!(!holds(json!("1"), Some(json!(1))));
    // A mapping without operators is equality with that object (as before).
    assert!(holds(json!({"env": "prod"}), Some(json!({"env": "prod"}))));
    assert!(!holds(json!({"env": "prod"}), Some(json!("prod"))));
}

#[test]
fn orderings_on_numbers_and_times() {
    assert!(holds(json!({"gt": 500}), Some(json!(500.01))));
    assert!(!holds(json!({"gt": 500}), Some(json!(500))));
    assert!(holds(json!({"gte": 500}), Some(json!(500.0))));
    assert!(holds(json!({"lt": -1}), Some(json!(i64::MIN))));
    assert!(holds(json!({"gt": 1.0e19}), Some(json!(u64::MAX))));
    assert!(!holds(json!({"gt": 1.9e19}), Some(json!(u64::MAX))));
    assert!(
        !holds(json!({"gt": 5}), Some(json!("6"))),
        "a numeric string is a string"
    );
    let after = json!({"gt": "2026-01-01T00:00:00Z"});
    assert!(holds(
        after.clone(),
        Some(json!("2026-01-01T00:00:01+00:00"))
    ));
    assert!(
        holds(after.clone(), Some(json!("2026-01-01T00:30:00-01:00"))),
        "offsets count"
    );
    assert!(!holds(after.clone(), Some(json!("2025-12-31T23:59:59Z"))));
    assert!(
        !holds(after, Some(json!("tomorrow"))),
        "not a time: no match"
    );
    assert!(!holds(json!({"gt": 0, "lt": 10}), Some(json!(10))));
    assert!(holds(json!({"gt": 0, "lt": 10}), Some(json!(9.99))));
}

#[test]
fn strings_regexes_addresses_and_paths() {
    assert!(holds(
        json!({"contains": "ße/日"}),
        Some(json!("grüße/日本"))
    ));
    assert!(holds(
        json!({"contains": {"a": 1.0}}),
        Some(json!([{"a": 1}]))
    ));
    assert!(
        !holds(json!({"contains": "a"}), Some(json!({"a": 1}))),
        "objects contain nothing"
    );
    // `matches` covers the whole value: no accidental substring match.
    let api = json!({"matches": "https://api\\.example\\.com/.*"});
    assert!(holds(
        api.clone(),
        Some(json!("https://api.example.com/v1"))
    ));
    assert!(!holds(
        api,
        Some(json!("https://evil.test/?https://api.example.com/"))
    ));
    assert!(holds(json!({"matches": "(?i)éTé"}), Some(json!("ÉtÉ"))));
    // Addresses: ranges, single addresses, IPv4-mapped IPv6 folded to IPv4.
    let private = json!({"cidr": ["10.0.0.0/8", "fd00::/8", "192.0.2.1"]});
    for (address, inside) in [
        ("10.1.2.3", true),
        ("::ffff:10.1.2.3", true),
        ("fd12::1", true),
        ("192.0.2.1", true),
        ("192.0.2.2", false),
        ("11.0.0.1", false),
        ("010.0.0.1", false),
        ("10.0.0.1/8", false),
        ("localhost", false),
    ] {
        assert_eq!(
            holds(private.clone(), Some(json!(address))),
            inside,
            "{address}"
        );
    }
    // Globs see the normalised path: `..` cannot walk out of or into prod.
    let prod = json!({"glob": "prod/**"});
    for (path, inside) in [
        ("prod/db/x", true),
        ("./prod//db", true),
        ("staging/../prod/db", true),
        ("prod/../staging/db", false),
        ("production/x", false),
        ("/prod/x", false),
    ] {
        assert_eq!(holds(prod.clone(), Some(json!(path))), inside, "{path}");
    }
    assert!(
        !holds(json!({"glob": "prod/*"}), Some(json!("prod/a/b"))),
        "* stays in a segment"
    );
}

#[test]
fn combinators_on_values_and_on_inputs() {
    assert!(holds(
        json!({"any_of": [{"lt": 10}, {"gt": 500}]}),
        Some(json!(501))
    ));
    assert!(!holds(
        json!({"any_of": [{"lt": 10}, {"gt": 500}]}),
        Some(json!(50))
    ));
    assert!(holds(json!({"not": {"in": ["EUR"]}}), Some(json!("USD"))));
    assert!(
        holds(json!({"not": {"eq": 1}}), None),
        "not around a failing test holds on absent"
    );
    assert!(holds(
        json!({"all_of": [{"gt": 1}, {"lt": 3}]}),
        Some(json!(2))
    ));

    let inputs = json!({
        "any_of": [{"amount": {"gt": 500}}, {"currency": {"not_in": ["EUR", "USD"]}}],
        "not": {"internal": true},
        "target.env": "prod",
    });
    let conditions = parse_inputs(inputs.as_object().expect("map")).expect("valid");
    let check = |value: Value| {
        let map = value.as_object().expect("map").clone();
        conditions.iter().all(|c| c.holds(&map))
    };
    assert!(check(
        json!({"amount": 900, "currency": "EUR", "target": {"env": "prod"}})
    ));
    assert!(check(
        json!({"amount": 9, "currency": "GBP", "target": {"env": "prod"}})
    ));
    assert!(!check(
        json!({"amount": 9, "currency": "EUR", "target": {"env": "prod"}})
    ));
    assert!(!check(
        json!({"amount": 900, "internal": true, "target": {"env": "prod"}})
    ));
    assert!(!check(json!({"amount": 900})));
}

#[test]
fn item_quantifiers_look_inside_arrays() {
    let internal = json!({"every_item": {"ends_with": "@example.com"}});
    assert!(holds(
        internal.clone(),
        Some(json!(["a@example.com", "b@example.com"]))
    ));
    assert!(!holds(
        internal.clone(),
        Some(json!(["a@example.com", "b@evil.test"]))
    ));
    assert!(
        !holds(internal.clone(), Some(json!(["a@example.com", 5]))),
        "a number is not internal"
    );
    assert!(
        holds(internal.clone(), Some(json!([]))),
        "vacuously true on an empty array"
    );
    assert!(
        !holds(internal, Some(json!("a@example.com"))),
        "a string is not an array"
    );
    let external = json!({"any_item": {"not": {"ends_with": "@example.com"}}});
    assert!(holds(
        external.clone(),
        Some(json!(["a@example.com", "b@evil.test"]))
    ));
    assert!(!holds(external, Some(json!(["a@example.com"]))));
}

#[test]
fn explanations_give_expected_against_actual() {
    let inputs = json!({"amount": {"gt": 500}, "currency": {"in": ["EUR", "USD"]}});
    let conditions = parse_inputs(inputs.as_object().expect("map")).expect("valid");
    let actual = json!({"amount": 120, "currency": "EUR"});
    let failure = conditions
        .iter()
        .find_map(|c| c.failure(actual.as_object().expect("map")))
        .expect("fails");
    assert_eq!(failure, "input amount is 120 but must be > 500");
    let absent = json!({"amount": 900});
    let failure = conditions
        .iter()
        .find_map(|c| c.failure(absent.as_object().expect("map")))
        .expect("fails");
    assert_eq!(
        failure,
        "input currency is absent but must be one of [\"EUR\", \"USD\"]"
    );
}

#[test]
fn bad_conditions_are_refused_with_their_place() {
    for (inputs, place, text) in [
        (
            json!({"amount": {"gt": "soon"}}),
            "when.inputs.amount.gt",
            "RFC 3339",
        ),
        (
            json!({"amount": {"gt": 1, "gtt": 2}}),
            "when.inputs.amount.gtt",
            "unknown operator",
        ),
        (json!({"x": {"in": []}}), "when.inputs.x.in", "list of 1"),
        (
            json!({"x": {"matches": "("}}),
            "when.inputs.x.matches",
            "regular expression",
        ),
        (
            json!({"x": {"matches": "a{1000}{1000}"}}),
            "when.inputs.x.matches",
            "regular expression",
        ),
        (
            json!({"x": {"matches": "a".repeat(2000)}}),
            "when.inputs.x.matches",
            "longer than",
        ),
        (
            json!({"x": {"cidr": "10.0.0.0/33"}}),
            "when.inputs.x.cidr",
            "address range",
        ),
        (json!({"x": {"glob": "a/[b"}}), "when.inputs.x.glob", "glob"),
        (
            json!({"x": {"exists": "yes"}}),
            "when.inputs.x.exists",
            "true or false",
        ),
        (json!({"a..b": 1}), "when.inputs.a..b", "dotted"),
        (
            json!({"any_of": []}),
            "when.inputs.any_of",
            "non-empty list",
        ),
        (json!({"any_of": [1]}), "when.inputs.any_of[0]", "mapping"),
    ] {
        let problems =
            parse_inputs(inputs.as_object().expect("map")).expect_err(&inputs.to_string());
        assert!(
            problems
                .iter()
                .any(|(at, message)| at == place && message.contains(text)),
            "{inputs}: {problems:?}"
        );
    }
    let mut deep = json!({"eq": 1});
    for _ in 0..=MAX_NESTING {
        deep = json!({"not": deep});
    }
    let problems = parse_inputs(json!({"x": deep}).as_object().expect("map")).expect_err("deep");
    assert!(problems[0].1.contains("nest deeper"), "{problems:?}");
}

#[test]
fn contradictions_are_found() {
    let found = |inputs: Value| {
        let conditions = parse_inputs(inputs.as_object().expect("map")).expect("valid");
        contradictions(&conditions)
    };
    assert!(found(json!({"amount": {"gt": 10, "lt": 5}}))[0].contains("gt 10 and lt 5"));
    assert!(!found(json!({"amount": {"gt": 10, "lte": 10}})).is_empty());
    assert!(found(json!({"amount": {"gte": 10, "lte": 10}})).is_empty());
    assert!(!found(json!({"amount": {"eq": 5, "gt": 10}})).is_empty());
    assert!(!found(json!({"currency": {"in": ["EUR", "USD"], "starts_with": "G"}})).is_empty());
    assert!(
        !found(json!({"x": {"gt": 1, "starts_with": "a"}})).is_empty(),
        "number and string"
    );
    assert!(!found(json!({"x": {"exists": false, "eq": 1}})).is_empty());
    assert!(
        !found(json!({"x": {"matches": "[^\\s\\S]"}})).is_empty(),
        "matches nothing"
    );
    assert!(found(json!({"x": {"any_of": [{"gt": 10}, {"lt": 5}]}})).is_empty());
    assert!(found(json!({"x": {"gt": 1}, "y": {"lt": 0}})).is_empty());
}

/// A random test tree, spelled as a policy would write it.
fn condition_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| json!({"gt": n})),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!({"lte": f})),
        "[a-c]{0,3}".prop_map(|s| json!({"starts_with": s})),
        "[a-c]{0,3}".prop_map(|s| json!({"contains": s})),
        "[a-c]{1,3}".prop_map(|s| json!({"in": [s, 1]})),
        "[a-c]{1,3}".prop_map(|s| json!({"ne": s})),
        any::<bool>().prop_map(|b| json!({"exists": b})),
        Just(json!({"matches": "[ab]+c?"})),
        Just(json!({"glob": "a/**"})),
        Just(json!({"cidr": "10.0.0.0/8"})),
        Just(json!({"any_item": {"gt": 0}})),
        Just(json!({"every_item": {"starts_with": "a"}})),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"any_of": v})),
            proptest::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"all_of": v})),
            inner.prop_map(|t| json!({"not": t})),
        ]
    })
}

fn any_value() -> impl Strategy<Value = Option<Value>> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-c/.]{0,6}".prop_map(Value::from),
        "\\PC{0,4}".prop_map(Value::from),
        Just(json!("10.2.3.4")),
    ];
    proptest::option::of(scalar.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            inner.prop_map(|v| json!({"k": v})),
        ]
    }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn tests_never_panic_and_not_is_the_complement(condition in condition_json(), value in any_value()) {
        let test = test_of(condition.clone());
        let negated = test_of(json!({"not": condition}));
        prop_assert_eq!(test.holds(value.as_ref()), !negated.holds(value.as_ref()));
        // The canonical spelling parses back to the same test.
        prop_assert_eq!(test_of(test.to_json()), test);
    }

    #[test]
    fn equality_operators_agree(a in any_value(), b in any_value()) {
        let (Some(a), Some(b)) = (a, b) else { return Ok(()) };
        let eq = holds(json!({"eq": b.clone()}), Some(a.clone()));
        prop_assert_eq!(holds(json!({"ne": b.clone()}), Some(a.clone())), !eq);
        prop_assert_eq!(holds(json!({"in": [b.clone()]}), Some(a.clone())), eq);
        prop_assert_eq!(holds(json!({"not_in": [b.clone()]}), Some(a.clone())), !eq);
        prop_assert_eq!(eq, holds(json!({"eq": a}), Some(b)), "symmetric");
    }
}
