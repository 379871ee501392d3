//! The command table and Redis's number rules on arbitrary arguments.
//!
//! Input: arguments separated by `0x00` (`args[0]` is the command name). Looks the command up
//! (`lookup`, and `lookup_sub` for `parent sub`), checks arity and key positions for this and nearby
//! argument counts, hashes the keys, and parses every argument as an integer and a float.
//!
//! Invariants: no panic; a found command's name equals the argument up to ASCII case; key
//! positions are strictly increasing, ≥ 1 and < argc; `parse_i64` accepts exactly the canonical
//! decimal form of an `i64` (what `string2ll` accepts); INCRBYFLOAT's `incr_float` never panics and
//! reads back what it prints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcache_protocol::hash::{hash_tag, key_hash, raw_hash};
use ringcache_protocol::num::{incr_float, parse_i64, parse_len};
use ringcache_protocol::table::{self, CommandSpec};

fn check_spec(spec: &'static CommandSpec, args: &[&[u8]]) {
    let argc = args.len();
    if spec.arity < 0 {
        // "At least |arity|": once satisfied, one more argument still is.
        assert!(!spec.arity_ok(argc) || spec.arity_ok(argc + 1), "{spec:?}");
    } else {
        assert_eq!(spec.arity_ok(argc), argc == spec.arity as usize, "{spec:?}");
    }
    for n in [0, 1, 2, 3, argc, argc + 1, argc + 7] {
        let mut prev = 0;
        for (i, pos) in spec.key_positions(n).enumerate() {
            assert!(
                i < n,
                "more key positions than arguments: {spec:?} argc {n}"
            );
            assert!(
                pos >= 1 && pos < n,
                "key position {pos} for argc {n}: {spec:?}"
            );
            assert!(
                pos > prev,
                "key positions not increasing: {spec:?} argc {n}"
            );
            prev = pos;
        }
    }
    for pos in spec.key_positions(argc) {
        let key = args[pos];
        let tag = hash_tag(key);
        let start = tag.as_ptr() as usize - key.as_ptr() as usize;
        assert!(start + tag.len() <= key.len(), "hash tag outside the key");
        assert_eq!(key_hash(key), raw_hash(tag));
    }
    // The table finds a command under its own name.
    let again = table::lookup(spec.name.as_bytes()).expect("a command is found by its own name");
    assert!(
        std::ptr::eq(again, spec),
        "{} found as {}",
        spec.name,
        again.name
    );
}

fn check_numbers(arg: &[u8]) {
    let int = parse_i64(arg);
    assert_eq!(parse_len(arg), int);
    if let Some(v) = int {
        // string2ll accepts only the canonical form, so the value prints back as the argument.
        assert_eq!(
            v.to_string().as_bytes(),
            arg,
            "parse_i64 accepted a non-canonical form"
        );
    }
    if let Some(v) = std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    {
        if v.to_string().as_bytes() == arg {
            assert_eq!(int, Some(v), "parse_i64 rejected the canonical {v}");
        }
    }

    // INCRBYFLOAT's arithmetic never panics, and what it prints is a float it accepts back.
    if let Ok(text) = incr_float(None, arg, false) {
        assert!(
            incr_float(Some(text.as_bytes()), b"0", false).is_ok(),
            "incr_float printed {text:?}, which it does not parse"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let args: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let name = args[0];

    if let Some(spec) = table::lookup(name) {
        assert!(
            name.eq_ignore_ascii_case(spec.name.as_bytes()),
            "{:?} found as {}",
            name,
            spec.name
        );
        check_spec(spec, &args);
        assert!(std::ptr::eq(
            table::lookup(&name.to_ascii_uppercase()).expect("lookup ignores case"),
            spec
        ));
    }
    if args.len() >= 2 {
        if let Some(spec) = table::lookup_sub(args[0], args[1]) {
            let mut want = args[0].to_ascii_lowercase();
            want.push(b'|');
            want.extend(args[1].to_ascii_lowercase());
            assert_eq!(
                spec.name.as_bytes(),
                &want[..],
                "subcommand found under another name"
            );
            check_spec(spec, &args);
        }
    }
    for arg in &args {
        check_numbers(arg);
    }
});
