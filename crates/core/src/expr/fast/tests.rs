//! The native path must answer exactly what jaq answers, whenever it answers at all.

use serde_json::{Value, json};

use super::{Node, Owned, Plan};
use crate::expr::{Budget, Expr, Scope, VarNames};

/// Expressions covering every construct of the subset, its edges, and constructs outside it.
const CORPUS: &[&str] = &[
    ".",
    "1",
    "-1",
    "1.5",
    "1e3",
    "\"text\"",
    "\"tab\\tnew\\nline \\u00e9\"",
    "true",
    "false",
    "null",
    ".a",
    ".a.b",
    ".a?",
    ".a.b?",
    ".[0]",
    ".[1]?",
    ".[5]",
    ".[]",
    ".[]?",
    ".a[]",
    ".[] | .id",
    ".\"a\"",
    ".a // \"d\"",
    ".a.b // .c // 0",
    "(.[] | select(. != null)) // \"none\"",
    "empty // 1",
    ". and true",
    ".a or .b",
    "(.a // false) and (.b // false)",
    ". == 1",
    ". == 1.0",
    ". != \"x\"",
    ". < 2",
    ". <= \"m\"",
    ". > [1]",
    ". >= null",
    ".a == .b",
    "[1, 2] == [1, 2.0]",
    "{\"a\": 1} == {\"a\": 1.0}",
    ". + 1",
    ". - 1",
    ". * 2",
    ". / 2",
    ". + 0.5",
    ". + .",
    ". - .",
    ". * .",
    ". / .",
    "9223372036854775807 + .",
    "-9223372036854775807 - .",
    ".a + .b",
    ". + null",
    "null + .",
    ". + \"!\"",
    ". + [0]",
    ". + {\"z\": 1}",
    "-.",
    "-(.a)",
    "[]",
    "[.]",
    "[.[]]",
    "[.[] | . + 1]",
    "[.[]?, 1]",
    "{}",
    "{a: 1}",
    "{a: ., b: [.]}",
    "{id: .id, check: \"x\"}",
    "{id, check}",
    "{\"quoted\": 1}",
    "{(.k // \"k\"): 1}",
    "{\"s\\(.k // 1)\": 2}",
    "{a: 1, a: 2}",
    "\"x\\(.)y\"",
    "\"n=\\(.a) m=\\(.b)\"",
    "if . then 1 else 2 end",
    "if . == 1 then \"one\" elif . == 2 then \"two\" else \"many\" end",
    "if . then 1 end",
    "if .a then .b end",
    "empty",
    "1, 2",
    "(1, 2) | . * 10",
    ". | not",
    "not",
    "length",
    ".a | length",
    "type",
    "[.[] | type]",
    "select(. != null)",
    "[.[] | select(. > 1)]",
    "map(. + 1)",
    "map(.id)",
    "sort_by(.)",
    "sort_by(.id)",
    "sort_by(.id, .name)",
    "sort_by(-.)",
    "[.[]?] | sort_by(.)",
    "[.[]?] | sort_by(.id?)",
    "[.[]?] | sort_by(.id) | length",
    "has(\"a\")",
    "has(0)",
    "has(-1)",
    "test(\"^[A-Za-z]{2}$\")",
    "test(\"^[0-9]{5}$\")",
    "test(\"é\")",
    "test(\".\")",
    "test(\"^.$\")",
    "test(\"(\")",
    ".a = 1",
    ".a.b = .c",
    ".a |= . + 1",
    ".a += 1",
    ".a -= 1",
    ".a *= 2",
    ".a /= 2",
    ".a //= \"d\"",
    ".results += [{id: 1}]",
    ".a += [1.0]",
    ".a += [.b]",
    ".a += [.[]?]",
    ".x.y += [.]",
    ".x.y.z = 1",
    "$item",
    "$item.a",
    "{$item}",
    "$item.a[1]",
    "$item.a[5]",
    "$item.z.y",
    "$item.a.b",
    "[.[]?] | .[1]",
    "[.[]?] | .[1].id",
    "(.a // .b) | .c",
    "{a: .a} | .a.b",
    "(if .a then .b else .c end) | type",
    ".a.b.c // .a",
    "[$item, .]",
    // Given the input (`eval_owned`), these move parts of it instead of copying them.
    "if .a then .results += [1] else .n += 1 end",
    "if . == 1 then . elif .a then {a: .a} else .x = 2 end",
    "if .a then .b end",
    "{x: .a, y: .b}",
    "{x: .a, y: .a}",
    "{x: .a.b, y: .a}",
    "{x: .a.b, y: .a.c, z: (.a | length)}",
    "{v: (.a | length), a: .a, rest: .b}",
    "{a: .a?, b: .b}",
    "{a: .[0], b: .b}",
    "{valid: (.errors | length == 0), errors: .errors, passed: .passed}",
    "{person: ., errors: [], passed: []}",
    "{all: ., n: length}",
    "if (.a // 0) > 1 then .errors += [{id: 1}] else .passed += [{id: 1}] end",
    // Outside the subset: always jaq's.
    ".[1:]",
    ".[-1]",
    ". % 2",
    "reduce .[] as $x (0; . + $x)",
    ". as $x | $x",
    "try error(\"x\") catch .",
    "..",
    "@base64",
    "keys",
    "add",
    "tostring",
    "test(\"a\"; \"i\")",
    "first(.[])",
    "$__loc__",
    ".[.a]",
];

fn inputs() -> Vec<Value> {
    let mut v = vec![
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(1),
        json!(2),
        json!(-3),
        json!(2.5),
        json!(1.0e20),
        json!(9007199254740993_i64),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(""),
        json!("a"),
        json!("ab"),
        json!("m"),
        json!("Ünïcödé"),
        json!("12345"),
        json!("1234"),
        json!("OR"),
        json!("or"),
        json!("日本"),
        json!([]),
        json!([1, 2, 3]),
        json!([3, 1, 2, 1.5]),
        json!([null, false, 1, "a", [1], {"a": 1}]),
        json!([{"id": 2, "name": "b"}, {"id": 1, "name": "a"}, {"id": 2, "name": "a"}]),
        // Already in order (ties included), and keys of mixed types in and out of order.
        json!([{"id": 1, "name": "b"}, {"id": 1, "name": "a"}, {"id": 1.5}, {"id": 3}]),
        json!([{"id": "a"}, {"id": null}, {"id": [0]}, {"id": 1}, {"id": false}, {"id": 1.0}]),
        json!([{"id": {"x": 1}}, {"id": {"x": 0}}]),
        json!({}),
        json!({"a": 1}),
        json!({"a": 1.0, "b": 1}),
        json!({"a": {"b": "x"}, "c": 3}),
        json!({"a": "s", "b": "t"}),
        json!({"a": [1, 2], "b": [3]}),
        json!({"a": null, "b": false}),
        json!({"a": true, "b": 0}),
        json!({"k": "key", "a": 5}),
        json!({"x": 5}),
        json!({"x": {"y": []}}),
        json!({"id": 7, "check": "C", "extra": 1}),
        json!({"results": [{"id": 0}]}),
        json!({"a": {"b": 1.0, "c": [2.0]}, "b": {"x": 1}}),
        json!({"errors": [], "passed": [{"id": 1, "check": "C"}], "n": 3}),
        json!({"a": 2, "errors": [{"id": 0}], "passed": null}),
    ];
    for s in ["person-valid.json", "person-short-first-name.json"] {
        let path = format!("{}/../../../shared/samples/{s}", env!("CARGO_MANIFEST_DIR"));
        if let Ok(text) = std::fs::read_to_string(path) {
            v.push(serde_json::from_str(&text).expect("the shared samples are JSON"));
        }
    }
    for s in ["ada.json", "incomplete.json"] {
        let path = format!(
            "{}/../../examples/person-validation/samples/{s}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).expect("the sample app's inputs exist");
        v.push(serde_json::from_str(&text).expect("the sample inputs are JSON"));
    }
    v
}

fn scope() -> (VarNames, Scope) {
    let names = VarNames::default().with(["item"]);
    let mut scope = Scope::new();
    scope.set("item", json!({"a": [1, "two"]}));
    (names, scope)
}

/// Compares the native answer with jaq's; returns whether the native path answered.
fn agree(e: &Expr, input: &Value, scope: &Scope) -> bool {
    // The owned path (which updates in place) must agree too, errors included; and so must it
    // on the input as an expression would have produced it (`settled`: integral floats
    // written as integers), where it settles only what it adds.
    agree_owned(e, input.clone(), false, scope);
    let identity = Expr::compile(".", &VarNames::default()).expect("compiles");
    if let Ok(settled) = identity.eval_jaq(input, scope, &Budget::default()) {
        agree_owned(e, settled, true, scope);
    }
    let Some(plan) = &e.fast else {
        return false;
    };
    let Ok(native) = plan.first(input, scope) else {
        return false;
    };
    let jaq = e.eval_jaq(input, scope, &Budget::default());
    let native_text = serde_json::to_string(&native).expect("serialises");
    match jaq {
        Ok(v) => assert_eq!(
            native_text,
            serde_json::to_string(&v).expect("serialises"),
            "`{}` on {input}",
            e.source()
        ),
        Err(err) => panic!(
            "`{}` on {input}: native answered {native_text}, jaq failed: {err}",
            e.source()
        ),
    }
    true
}

fn agree_owned(e: &Expr, input: Value, settled: bool, scope: &Scope) {
    let reference = e.eval_jaq(&input, scope, &Budget::default());
    let what = format!("owned `{}` on {input} (settled: {settled})", e.source());
    let owned = e.eval_owned(input, settled, scope, &Budget::default());
    match (&owned, &reference) {
        (Ok(a), Ok(b)) => assert_eq!(
            serde_json::to_string(a).expect("serialises"),
            serde_json::to_string(b).expect("serialises"),
            "{what}"
        ),
        (a, b) => assert_eq!(a, b, "{what}"),
    }
}

#[test]
fn native_answers_equal_jaqs_over_the_corpus() {
    let (names, scope) = scope();
    let inputs = inputs();
    let mut answered = 0;
    let mut compared = 0;
    for src in CORPUS {
        let Ok(e) = Expr::compile(src, &names) else {
            // Only sources jaq itself refuses may be refused.
            assert!(["$__loc__"].contains(src), "`{src}` should compile on jaq");
            continue;
        };
        for input in &inputs {
            compared += 1;
            if agree(&e, input, &scope) {
                answered += 1;
            }
        }
    }
    // Much of the corpus is inside the subset (the rest probes its edges): a good share of the
    // pairs must have been answered natively, or this test would prove little.
    assert!(
        answered * 5 > compared * 2,
        "only {answered} of {compared} evaluations were native"
    );
}

#[test]
fn updates_in_place_agree_with_jaq_and_refuse_deep_results() {
    let (names, scope) = scope();
    let mut deep = json!(1);
    for _ in 0..300 {
        deep = json!([deep]);
    }
    let input = json!({"results": [1], "n": 1, "s": "a"});
    for src in [
        ".results += [2]",
        ".n += 1",
        ".n -= 0.5",
        ".s += \"b\"",
        ".missing += [1]",
        ".n //= 5",
        ".z //= 5",
        ".n |= . * 3",
        ".s = .n",
        ".n += \"x\"",
        ".s.t = 1",
        ".a.b = 1",
    ] {
        let e = Expr::compile(src, &names).expect("compiles");
        assert!(e.is_native(), "`{src}`");
        agree(&e, &input, &scope);
    }
    let e = Expr::compile(".d = $item", &VarNames::default().with(["item"])).expect("compiles");
    let mut s = Scope::new();
    s.set("item", deep);
    let owned = e.eval_owned(json!({}), true, &s, &Budget::default());
    assert_eq!(owned, e.eval_jaq(&json!({}), &s, &Budget::default()));
    assert!(
        matches!(owned, Err(crate::expr::ExprError::Eval { .. })),
        "{owned:?}"
    );
}

#[test]
fn constructs_outside_the_subset_have_no_plan() {
    let (names, _) = scope();
    for src in [
        ".[1:]",
        ".[-1]",
        ". % 2",
        "reduce .[] as $x (0; . + $x)",
        ". as $x | $x",
        "try error(\"x\") catch .",
        "..",
        "@base64",
        "keys",
        "test(\"a\"; \"i\")",
        "{a: (1, 2)}",
        "(1, 2) + 1",
        "if (true, false) then 1 else 2 end",
        ".[.a]",
        "test(\"(\")",
    ] {
        let e = Expr::compile(src, &names).expect("jaq compiles it");
        assert!(!e.is_native(), "`{src}` must be left to jaq");
    }
}

/// Errors are always jaq's: the native path gives up and jaq reports the error.
#[test]
fn errors_come_from_jaq() {
    let (names, scope) = scope();
    for (src, input) in [
        (".a", json!(1)),
        (".[]", json!(null)),
        ("length", json!(true)),
        (". + 1", json!("s")),
        (". / 0", json!(1)),
        ("9223372036854775807 + 1", json!(null)),
        ("test(\"a\")", json!(1)),
        (".a.b = 1", json!({"a": 5})),
        (". < .", json!({"a": 1})),
    ] {
        let e = Expr::compile(src, &names).expect("compiles");
        let native = e.fast.as_ref().map(|p| p.first(&input, &scope));
        assert!(
            matches!(native, None | Some(Err(_))),
            "`{src}` on {input} must not be answered natively: {native:?}"
        );
        assert_eq!(
            e.eval(&input, &scope, &Budget::default()),
            e.eval_jaq(&input, &scope, &Budget::default()),
            "`{src}` on {input}"
        );
    }
}

/// Every `${ … }` expression of the sample app, scanned from the workflow files.
fn sample_expressions() -> Vec<String> {
    let dir = format!(
        "{}/../../examples/person-validation/workflows",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut out = vec!["{person: ., results: []}".to_owned()];
    for entry in std::fs::read_dir(dir).expect("the sample workflows exist") {
        let path = entry.expect("readable").path();
        // The workflows that call out over HTTP read `$error`, `$secrets` and `$runtime`;
        // their cost is the calls', and jaq evaluates them.
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("validate-http"))
        {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("readable");
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            let body = &rest[start + 2..];
            let mut depth = 1;
            let end = body
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .expect("balanced braces");
            out.push(body[..end].trim().to_owned());
            rest = &body[end..];
        }
    }
    out
}

/// A small deterministic generator (xorshift) of person-shaped and arbitrary documents.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }

    fn leaf(&mut self) -> Value {
        match self.next() % 8 {
            0 => Value::Null,
            1 => json!(self.next().is_multiple_of(3)),
            2 => json!((self.next() % 200) as i64 - 100),
            3 => json!((self.next() % 1000) as f64 / 8.0),
            _ => json!(self.pick(&[
                "", "J", "Jo", "Zoë", "ÿ", "12345", "1234", "123456", "9730a", "OR", "o", "ORE",
                "日本", "Line 1", " ", "ab"
            ])),
        }
    }

    fn person(&mut self) -> Value {
        let mut doc = serde_json::Map::new();
        for (outer, fields) in [
            ("Name", &["First", "Last", "Title"][..]),
            (
                "Address",
                &["Line1", "Line2", "City", "State", "Zip", "Country"][..],
            ),
        ] {
            match self.next() % 6 {
                0 => {}
                1 => {
                    doc.insert(outer.to_owned(), Value::Null);
                }
                _ => {
                    let mut m = serde_json::Map::new();
                    for f in fields {
                        if !self.next().is_multiple_of(5) {
                            m.insert((*f).to_owned(), self.leaf());
                        }
                    }
                    doc.insert(outer.to_owned(), Value::Object(m));
                }
            }
        }
        Value::Object(doc)
    }
}

#[test]
fn the_sample_apps_expressions_are_native_and_agree_with_jaq() {
    let (names, scope) = scope();
    let exprs = sample_expressions();
    assert!(exprs.len() >= 10, "found {} expressions", exprs.len());
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let mut docs: Vec<Value> = (0..300).map(|_| g.person()).collect();
    docs.extend(inputs());
    for src in &exprs {
        let e = Expr::compile(src, &names).expect("the sample's expressions compile");
        assert!(e.is_native(), "`{src}` should have a native plan");
        let mut answered = 0;
        for doc in &docs {
            // Chain and fan-in expressions read what earlier tasks produced; give them both
            // the raw document and the shapes they see in the workflow.
            let shaped = [
                doc.clone(),
                json!({"person": doc, "results": [{"id": 2, "check": "B", "message": "m", "failed": true}, {"id": 1, "check": "A", "message": "n", "failed": false}]}),
                json!([{"id": 3, "check": "C", "message": "m", "failed": false}, {"id": 1, "check": "A", "message": "n", "failed": true}]),
            ];
            for input in &shaped {
                if agree(&e, input, &scope) {
                    answered += 1;
                }
            }
        }
        assert!(answered > 0, "`{src}` was never answered natively");
    }
}

#[test]
fn random_documents_agree_over_the_corpus() {
    let (names, scope) = scope();
    let mut g = Gen(0x2545_f491_4f6c_dd1d);
    let docs: Vec<Value> = (0..40)
        .map(|i| {
            if i % 2 == 0 {
                g.person()
            } else {
                Value::Array((0..(g.next() % 4)).map(|_| g.leaf()).collect())
            }
        })
        .collect();
    for src in CORPUS {
        let Ok(e) = Expr::compile(src, &names) else {
            continue;
        };
        for d in &docs {
            agree(&e, d, &scope);
        }
    }
}

/// Random expressions from a small grammar around the subset (and a little outside it), on
/// random documents: wherever the native path answers, jaq must answer the same.
#[test]
fn random_expressions_agree_with_jaq() {
    fn expr(g: &mut Gen, depth: u32) -> String {
        const LEAVES: &[&str] = &[
            ".", ".a", ".b", ".a.b", ".[0]", ".[]", ".a?", ".[1]?", ".c[]?", "0", "1", "-1", "2.5",
            "\"a\"", "\"\"", "null", "true", "false", "[]", "{}", "$item", "$item.a",
        ];
        const BINARY: &[&str] = &[
            "+", "-", "*", "/", "==", "!=", "<", "<=", ">", ">=", "and", "or", "//", "|", ",",
        ];
        const UNARY: &[&str] = &[
            "length",
            "not",
            "type",
            "sort_by(.a)",
            "sort_by(.)",
            "map(. + 1)",
            "map(.a)",
            "has(\"a\")",
            "has(0)",
            "test(\"a\")",
            "test(\"^[0-9]+$\")",
            "keys",
            "tostring",
            "select(.a)",
            "select(. != null)",
            "empty",
        ];
        if depth == 0 || g.next().is_multiple_of(4) {
            return g.pick(LEAVES).to_owned();
        }
        let d = depth - 1;
        match g.next() % 10 {
            0..=2 => format!("({} {} {})", expr(g, d), g.pick(BINARY), expr(g, d)),
            3 => format!("({} | {})", expr(g, d), g.pick(UNARY)),
            4 => format!("[{}]", expr(g, d)),
            5 => format!("{{a: {}, b: {}}}", expr(g, d), expr(g, d)),
            6 => format!(
                "(if {} then {} else {} end)",
                expr(g, d),
                expr(g, d),
                expr(g, d)
            ),
            7 => format!("\"x\\({})\"", expr(g, d)),
            8 => format!(
                "({} {} {})",
                g.pick(&[".a", ".b", ".a.b"]),
                g.pick(&["=", "|=", "+=", "-=", "//="]),
                expr(g, d)
            ),
            _ => format!("(-{})", expr(g, d)),
        }
    }
    let (names, scope) = scope();
    // `BATON_FUZZ_SEED` and `BATON_FUZZ_ROUNDS` widen the search by hand; CI runs the defaults.
    let seed = std::env::var("BATON_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5851_f42d_4c95_7f2d_u64);
    let mut g = Gen(seed);
    let mut docs: Vec<Value> = inputs();
    for _ in 0..20 {
        let mut m = serde_json::Map::new();
        for k in ["a", "b", "c"] {
            if !g.next().is_multiple_of(4) {
                let v = if g.next().is_multiple_of(3) {
                    json!({"a": g.leaf(), "b": g.leaf()})
                } else if g.next().is_multiple_of(3) {
                    Value::Array((0..g.next() % 4).map(|_| g.leaf()).collect())
                } else {
                    g.leaf()
                };
                m.insert(k.to_owned(), v);
            }
        }
        docs.push(Value::Object(m));
    }
    // jaq allocates `"s" * n` bytes at once (docs/adr/0002): keep huge numbers out of reach of
    // the generated `*`.
    fn small(v: &Value) -> bool {
        match v {
            Value::Number(n) => n.as_f64().is_some_and(|x| x.abs() < 1.0e6),
            Value::Array(a) => a.iter().all(small),
            Value::Object(m) => m.values().all(small),
            _ => true,
        }
    }
    docs.retain(small);
    let (mut native, mut total) = (0, 0);
    let rounds: usize = std::env::var("BATON_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    for _ in 0..rounds {
        let src = expr(&mut g, 4);
        let Ok(e) = Expr::compile(&src, &names) else {
            continue;
        };
        for d in docs.iter().step_by(3) {
            total += 1;
            if agree(&e, d, &scope) {
                native += 1;
            }
        }
    }
    // The grammar stays mostly inside the subset, so a good share must have been native.
    assert!(native * 5 > total, "{native} of {total} native");
}

/// Patterns of every kind `test` may get: plain ones (on the DFA), ones whose meaning could
/// differ between the engines (on jaq's own), and ones jaq refuses (no plan).
const PATTERNS: &[&str] = &[
    "^[A-Za-z]{2}$",
    "^[0-9]{5}$",
    "",
    "^$",
    "a",
    "^a",
    "a$",
    "ab|cd",
    "^(ab)+$",
    "^(a|b)*c?$",
    "colou?r",
    "^a{2,3}$",
    "a{2,}",
    "a+?b",
    "a{1,2}?",
    "[a-c_]",
    "[A-z]",
    "^[a-zA-Z0-9_]+@[a-z]+\\.[a-z]{2,3}$",
    "\\(x\\)",
    "\\$",
    "a\\-b",
    "x y, z:/",
    "((a))",
    // Not plain: jaq's engine answers.
    "é",
    ".",
    "^.$",
    "^..$",
    "\\d",
    "^\\d{5}$",
    "\\w+",
    "\\s",
    "\\bab\\b",
    "[^a]",
    "^[^a]$",
    "(?i)ab",
    "(?:ab)+",
    "[a-]",
    "[[:alpha:]]",
    "a{,2}",
    "a{2, 3}",
    "a{200}",
    "\\n",
    "^*a",
    "a**",
    "\\%",
    "[]a]",
    // jaq refuses these.
    "(",
    "[",
    "a{3,2}",
    "\\1",
];

/// Texts for the patterns above: ASCII, multi-byte characters, line ends, lookalike digits.
const TEXTS: &[&str] = &[
    "",
    "a",
    "ab",
    "AB",
    "Ab",
    "or",
    "OR",
    "abc",
    "aab",
    "aaa",
    "aaaa",
    "cd",
    "abab",
    "c",
    "abc",
    "color",
    "colour",
    "12345",
    "1234",
    "123456",
    "١٢٣٤٥",
    "é",
    "aé",
    "éa",
    "日本",
    "a\n",
    "\na",
    "ab\n",
    "a b",
    "a-b",
    "a.b",
    "(x)",
    "$",
    "x y, z:/",
    "me@ex.com",
    "me@ex.co.uk",
    "%",
    "_",
    "[",
    "ab cd",
    "\u{0}",
];

/// jq string literal for `s`.
fn jq_string(s: &str) -> String {
    serde_json::to_string(s).expect("serialises")
}

#[test]
fn test_patterns_agree_with_jaq_on_both_engines() {
    let (names, scope) = scope();
    let mut dfa = 0;
    for pattern in PATTERNS {
        let src = format!("test({})", jq_string(pattern));
        let e = Expr::compile(&src, &names).expect("compiles");
        if let Some(super::Node::Test(p)) = e.fast.as_ref().map(|p| &p.root) {
            dfa += usize::from(p.is_dfa());
        }
        for text in TEXTS {
            agree(&e, &json!(text), &scope);
        }
    }
    assert!(dfa >= 20, "only {dfa} patterns run on the DFA");
}

#[test]
fn only_plain_patterns_run_on_the_dfa() {
    use super::pattern::{Pattern, plain};
    for p in [
        "^[A-Za-z]{2}$",
        "^[0-9]{5}$",
        "",
        "a|b",
        "^(ab)+$",
        "a{2,}?",
        "[a-c_]",
        "\\.",
    ] {
        assert!(plain(p), "{p}");
        assert!(Pattern::compile(p).is_some_and(|c| c.is_dfa()), "{p}");
    }
    for p in [
        ".",
        "\\d",
        "\\w",
        "\\s",
        "\\b",
        "[^a]",
        "(?i)a",
        "(?:a)",
        "é",
        "[a-]",
        "[]a]",
        "a{,2}",
        "a{200}",
        "^*",
        "a**",
        "(",
        ")",
        "[",
        "\\%",
        "\\n",
        "a{2, 3}",
        "[[:alpha:]]",
    ] {
        assert!(!plain(p), "{p}");
        assert!(Pattern::compile(p).is_none_or(|c| !c.is_dfa()), "{p}");
    }
    for p in ["(", "[", "a{3,2}", "\\1"] {
        assert!(Pattern::compile(p).is_none(), "jaq refuses {p}");
    }
}

/// Around jaq's nesting limit, with integral floats at the bottom and on the way: the native
/// path settles (normalises floats, checks depth) exactly as a trip through jaq.
#[test]
fn results_around_the_depth_limit_agree_with_jaq() {
    let (names, scope) = scope();
    let max = crate::expr::convert::MAX_DEPTH;
    let mut answered = 0;
    for depth in [max - 2, max - 1, max, max + 1] {
        let mut arrays = json!([1.0, 2.5, {"f": 3.0}]);
        let mut objects = json!({"f": 4.0, "s": "x"});
        for level in 1..depth {
            arrays = json!([level as f64, arrays]);
            objects = json!({"n": 5.0, "o": objects, "e": [], "m": {}});
        }
        for src in [
            ".",
            "[.]",
            "{x: .}",
            ".[1]",
            ".o",
            ".o = 1.0",
            ".n += 1",
            ".z = [[1.0]]",
            ".e += [.o]",
        ] {
            let e = Expr::compile(src, &names).expect("compiles");
            answered += usize::from(agree(&e, &arrays, &scope));
            answered += usize::from(agree(&e, &objects, &scope));
        }
    }
    assert!(answered >= 20, "only {answered} evaluations were native");
}

#[test]
fn objects_move_the_paths_no_other_entry_shares() {
    let moves = |src: &str| match Plan::compile(src).map(|p| p.root) {
        Some(Node::Obj(_, Some(shape))) => shape.moves,
        other => panic!("`{src}` lowered to {other:?}"),
    };
    assert_eq!(moves("{x: .a, y: .b}"), [true, true]);
    assert_eq!(moves("{x: .a, y: .a}"), [false, false]);
    assert_eq!(moves("{x: .a.b, y: .a, z: .c}"), [false, false, true]);
    assert_eq!(moves("{x: .a.b, y: .a.c}"), [true, true]);
    assert_eq!(
        moves("{y: .[0], z: (.a | length), w: 1, v: $item.a}"),
        [false; 4]
    );
    assert_eq!(moves("{id, check}"), [true, true]);
    assert_eq!(
        moves("{person: ., errors: [], n: (.a | length)}"),
        [true, false, false]
    );
    assert_eq!(moves("{all: ., a: .a}"), [false, false]);
    // Literal keys and constant values make a constant, built once.
    match Plan::compile("{id: 1, check: \"C\", n: null}").map(|p| p.root) {
        Some(Node::Const(v)) => assert_eq!(v.to_string(), r#"{"id":1,"check":"C","n":null}"#),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Plan::compile("{a: 1, a: 2}").map(|p| p.root),
        Some(Node::Obj(_, None))
    ));
}

#[test]
fn owned_evaluation_answers_natively_without_jaq() {
    let vars = Scope::new();
    let input = json!({"errors": [], "passed": [{"id": 1, "check": "C"}], "extra": 1.0});
    let plan = Plan::compile("{valid: (.errors | length == 0), errors: .errors, passed: .passed}")
        .expect("in the subset");
    match plan.first_owned(input, false, &vars) {
        Owned::Done(v) => assert_eq!(
            v,
            json!({"valid": true, "errors": [], "passed": [{"id": 1, "check": "C"}]})
        ),
        other => panic!("{other:?}"),
    }
    let plan = Plan::compile("if .n > 1 then .big += [.n] else .small += [.n] end")
        .expect("in the subset");
    match plan.first_owned(json!({"n": 2, "big": [1.0]}), false, &vars) {
        Owned::Done(v) => assert_eq!(v.to_string(), r#"{"n":2,"big":[1,2]}"#),
        other => panic!("{other:?}"),
    }
    // A path that does not fit (a key of a number) leaves the whole input to jaq, untouched.
    let plan = Plan::compile("{x: .a.b, y: .c}").expect("in the subset");
    let input = json!({"a": 1, "c": [1]});
    match plan.first_owned(input.clone(), false, &vars) {
        Owned::Back(v) => assert_eq!(v, input),
        other => panic!("{other:?}"),
    }
}
