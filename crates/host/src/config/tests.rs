//! The configuration's parsing, defaults, checks and overrides.

use super::*;

#[test]
fn defaults_apply_when_the_file_is_empty() {
    let c = Config::parse("", "baton.toml").expect("parses");
    assert_eq!(c.host.listen, "127.0.0.1:7071");
    assert_eq!(c.limits.max_body_bytes, 1024 * 1024);
    assert!(c.functions.is_empty());
}

#[test]
fn functions_bind_routes_to_workflows() {
    let c = Config::parse(
        "[functions.Validate]\nworkflow = \"validate\"\nauth = \"anonymous\"\nwait = \"2s\"\n",
        "baton.toml",
    )
    .expect("parses");
    let f = &c.functions["Validate"];
    assert_eq!(
        (f.workflow.as_str(), f.auth, f.mode),
        ("validate", AuthLevel::Anonymous, Mode::Sync)
    );
    assert_eq!(f.wait.0, Duration::from_secs(2));
    assert_eq!(f.methods, vec!["POST"]);
}

#[test]
fn http_allow_takes_ranges_and_single_addresses() {
    let c = Config::parse(
        "[http]\nallow = [\"10.0.0.0/8\", \"::1\", \"127.0.0.1\"]\nattempt_timeout = \"5s\"\n",
        "baton.toml",
    )
    .expect("parses");
    let allow: Vec<String> = c.http.allow.iter().map(|r| r.0.to_string()).collect();
    assert_eq!(allow, ["10.0.0.0/8", "::1/128", "127.0.0.1/32"]);
    let o = c.http.options();
    assert_eq!(o.attempt_timeout, std::time::Duration::from_secs(5));
    assert!(o.policy.check("10.1.2.3".parse().unwrap()).is_ok());
    assert!(o.policy.check("192.168.0.1".parse().unwrap()).is_err());
    assert!(
        Config::default()
            .http
            .options()
            .policy
            .check("127.0.0.1".parse().unwrap())
            .is_err(),
        "internal addresses are refused by default"
    );
    let e = Config::parse("[http]\n\nallow = [\"10.0.0.0/33\"]\n", "baton.toml")
        .expect_err("bad range");
    assert_eq!(e.position.map(|p| p.0), Some(3));
    assert!(e.message.contains("10.0.0.0/33"), "{e}");
}

#[test]
fn errors_name_file_line_column_and_field() {
    let e = Config::parse(
        "[limits]\nmax_body_bytes = 10\nmax_bodybytes = 3\n",
        "app/baton.toml",
    )
    .expect_err("typo");
    assert_eq!(e.position, Some((3, 1)));
    assert!(
        e.to_string()
            .starts_with("app/baton.toml:3:1: limits.max_bodybytes: unknown field `max_bodybytes`"),
        "{e}"
    );
    // A wrong value names the field it was given for, not only the value.
    let e = Config::parse(
        "[functions.X]\nworkflow = \"w\"\nwait = \"soon\"\n",
        "baton.toml",
    )
    .expect_err("bad");
    assert_eq!(e.position.map(|p| p.0), Some(3));
    assert!(e.message.starts_with("functions.X.wait: "), "{e}");
    assert!(e.message.contains("soon"), "{e}");
    let e = Config::parse(
        "[functions.X]\nworkflow = \"w\"\nauth = \"nobody\"\n",
        "baton.toml",
    )
    .expect_err("bad");
    assert!(e.message.starts_with("functions.X.auth: "), "{e}");
    assert!(
        e.message.contains("nobody") && e.message.contains("anonymous"),
        "{e}"
    );
    let e = Config::parse(
        "[functions.X]\nworkflow = \"w\"\nmode = \"sometimes\"\n",
        "app/baton.toml",
    )
    .expect_err("bad");
    assert_eq!(
        e.to_string(),
        "app/baton.toml:3:8: functions.X.mode: unknown variant `sometimes`, expected `sync` or `async`"
    );
    // Bad TOML has no field to name, only a place.
    let e = Config::parse("[limits\n", "baton.toml").expect_err("bad");
    assert_eq!(e.position.map(|p| p.0), Some(1));
    assert!(!e.message.starts_with('.'), "{e}");
}

#[test]
fn async_functions_are_durable_unless_told_otherwise() {
    let c = Config::parse(
        "[functions.A]\nworkflow = \"w\"\nmode = \"async\"\n\
         [functions.B]\nworkflow = \"w\"\nmode = \"async\"\ndurability = \"express\"\n\
         [functions.C]\nworkflow = \"w\"\n\
         [functions.D]\nworkflow = \"w\"\ndurability = \"durable\"\n\
         [store]\npath = \"x.db\"\nsynchronous = \"normal\"\n",
        "baton.toml",
    )
    .expect("parses");
    let d = |n: &str| c.functions[n].durability();
    assert_eq!(
        [d("A"), d("B"), d("C"), d("D")],
        [
            Durability::Durable,
            Durability::Express,
            Durability::Express,
            Durability::Durable
        ]
    );
    assert_eq!(
        (c.store.path.as_str(), c.store.synchronous),
        ("x.db", SyncMode::Normal)
    );
    let e = Config::parse("[store]\nsynchronous = \"off\"\n", "baton.toml").expect_err("bad");
    assert!(e.message.contains("off"), "{e}");
}

#[test]
fn a_postgres_store_is_configured_and_checked() {
    let c = Config::parse(
        "[store]\nurl = \"postgres://baton@db/app\"\nschema = \"tenant_1\"\npool_size = 4\n",
        "baton.toml",
    )
    .expect("parses");
    assert!(c.store.is_postgres());
    assert_eq!(
        (
            c.store.url.as_deref(),
            c.store.schema.as_str(),
            c.store.pool_size
        ),
        (Some("postgres://baton@db/app"), "tenant_1", 4)
    );
    for (text, field) in [
        ("[store]\nurl = \"mysql://db/app\"\n", "store.url"),
        (
            "[store]\nurl = \"postgres://db/app\"\nschema = \"Bad-Name\"\n",
            "store.schema",
        ),
        (
            "[store]\nurl = \"postgres://db/app\"\npool_size = 0\n",
            "store.pool_size",
        ),
    ] {
        let e = Config::parse(text, "baton.toml").expect_err(field);
        assert!(e.message.contains(field), "{field}: {e}");
    }
}

#[test]
fn the_store_is_named_by_url_or_path() {
    let mut c = Config::default();
    c.set_store("sqlite:///var/lib/baton/b.db")
        .expect("sqlite url");
    assert_eq!(c.store.path, "/var/lib/baton/b.db");
    c.set_store("local.db").expect("bare path");
    assert_eq!(c.store.path, "local.db");
    assert_eq!(c.store.url, None);
    c.set_store("postgres://baton@db/app")
        .expect("postgres url");
    assert_eq!(c.store.url.as_deref(), Some("postgres://baton@db/app"));
    assert!(c.store.is_postgres());
    c.set_store("postgresql://db/app")
        .expect("the other scheme");
    c.set_store("again.db").expect("back to a file");
    assert!(!c.store.is_postgres());
    let e = c.set_store("mysql://db/app").expect_err("unknown scheme");
    assert!(e.contains("mysql") && e.contains("postgres://"), "{e}");
    c.apply_env(|k| (k == "BATON_STORE_SYNCHRONOUS").then(|| "NORMAL".to_owned()))
        .expect("applies");
    assert_eq!(c.store.synchronous, SyncMode::Normal);
}

#[test]
fn environment_overrides_the_file() {
    let mut c = Config::parse("[host]\nlisten = \"127.0.0.1:1\"\n", "baton.toml").expect("parses");
    c.apply_env(|k| match k {
        "BATON_LISTEN" => Some("0.0.0.0:8080".to_owned()),
        "BATON_MAX_BODY_BYTES" => Some("2048".to_owned()),
        _ => None,
    })
    .expect("applies");
    assert_eq!(
        (c.host.listen.as_str(), c.limits.max_body_bytes),
        ("0.0.0.0:8080", 2048)
    );
    let e = c
        .apply_env(|k| (k == "BATON_MAX_IN_FLIGHT").then(|| "lots".to_owned()))
        .expect_err("bad");
    assert_eq!(e.file, "$BATON_MAX_IN_FLIGHT");
}
