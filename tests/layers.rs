//! The house shows the flow: read from the sources, no module imports from
//! a layer above its own, no siblings go round in a circle (a `mod.rs` and
//! its own children may use each other), and every module opens with a
//! line that says what it is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use regex::Regex;

/// Layers, bottom up: a module may use its own layer and those below.
const LAYERS: &[(&str, u8)] = &[
    ("ingest", 0),
    ("time", 0),
    ("mapping", 1),
    ("endpoints", 1),
    ("synth", 1),
    ("crypto", 2),
    ("objects", 2),
    ("store", 2),
    ("job", 3),
    ("api", 4),
    ("server", 5),
    ("cli", 6),
];

type Module = Vec<String>;

struct Source {
    /// Without comments and tests.
    code: String,
    is_mod_rs: bool,
}

fn modules() -> BTreeMap<Module, Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    let block = Regex::new(r"(?s)/\*.*?\*/").unwrap();
    let line = Regex::new(r"//[^\n]*").unwrap();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut segs: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let is_mod_rs = segs.last().is_some_and(|s| s == "mod");
            if is_mod_rs {
                segs.pop();
            }
            let segs = match segs.as_slice() {
                [one] if one == "lib" => Vec::new(),
                [one] if one == "main" => vec!["cli".to_owned()],
                _ => segs,
            };
            let text = std::fs::read_to_string(&path).unwrap();
            let first = text.lines().next().unwrap_or_default();
            assert!(
                first.starts_with("//!") || first.starts_with("/*!"),
                "{}: a module opens with a line that says what it is",
                path.display()
            );
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => &text[..i],
                None => &text,
            };
            let code = line
                .replace_all(&block.replace_all(text, ""), "")
                .into_owned();
            out.insert(segs, Source { code, is_mod_rs });
        }
    }
    out
}

/// Which module each item a `mod.rs` re-exports (`pub use child::{…}`)
/// comes from.
fn reexports(mods: &BTreeMap<Module, Source>) -> BTreeMap<(Module, String), Module> {
    let group = Regex::new(r"pub use (\w+)::\{([^}]*)\}").unwrap();
    let single = Regex::new(r"pub use (\w+)::(\w+);").unwrap();
    let word = Regex::new(r"\w+").unwrap();
    let mut out = BTreeMap::new();
    for (m, src) in mods {
        let child = |name: &str| {
            let mut c = m.clone();
            c.push(name.to_owned());
            c
        };
        for cap in group.captures_iter(&src.code) {
            for item in word.find_iter(&cap[2]) {
                out.insert((m.clone(), item.as_str().to_owned()), child(&cap[1]));
            }
        }
        for cap in single.captures_iter(&src.code) {
            out.insert((m.clone(), cap[2].to_owned()), child(&cap[1]));
        }
    }
    out
}

/// Every module's uses of other modules (`crate::…`, `super::…`), with
/// re-exports followed to the module that defines the item.
fn edges(mods: &BTreeMap<Module, Source>) -> BTreeMap<Module, BTreeSet<Module>> {
    let reexp = reexports(mods);
    let path = Regex::new(r"\b(crate|super)((?:::\w+)*)(?:::\{([^}]*)\})?").unwrap();
    let resolve = |segs: &[String]| -> Option<Module> {
        (1..=segs.len()).rev().find_map(|i| {
            let target: Module = segs[..i].to_vec();
            mods.contains_key(&target).then(|| {
                match segs
                    .get(i)
                    .and_then(|item| reexp.get(&(target.clone(), item.clone())))
                {
                    Some(from) => from.clone(),
                    None => target,
                }
            })
        })
    };
    let mut out: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (m, src) in mods {
        for cap in path.captures_iter(&src.code) {
            let segs: Vec<String> = cap[2]
                .trim_start_matches(':')
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let mut base: Vec<String> = if &cap[1] == "crate" {
                Vec::new()
            } else {
                // `super` is the parent of the module, whether it is a
                // file or a `mod.rs`.
                let _ = src.is_mod_rs;
                m[..m.len().saturating_sub(1)].to_vec()
            };
            base.extend(segs);
            let mut targets = vec![base.clone()];
            if let Some(group) = cap.get(3) {
                for item in group.as_str().split(',') {
                    let item = item.trim();
                    if item.is_empty() || item == "self" {
                        continue;
                    }
                    let mut t = base.clone();
                    t.push(item.split("::").next().unwrap_or(item).to_owned());
                    targets.push(t);
                }
            }
            for t in targets {
                if let Some(target) = resolve(&t)
                    && target != *m
                {
                    out.entry(m.clone()).or_default().insert(target);
                }
            }
        }
    }
    out
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "crate".to_owned()
    } else {
        m.join("::")
    }
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let mods = modules();
    let rank = |m: &Module| {
        let top = m.first().map_or("", String::as_str);
        LAYERS
            .iter()
            .find(|(n, _)| *n == top)
            .map(|(_, r)| *r)
            .unwrap_or_else(|| panic!("module {top} has no layer: add it to LAYERS"))
    };
    let mut upward = Vec::new();
    for (a, targets) in edges(&mods) {
        if a.is_empty() {
            continue;
        }
        for b in targets.iter().filter(|b| !b.is_empty()) {
            if rank(b) > rank(&a) {
                upward.push(format!("{} -> {}", name(&a), name(b)));
            }
        }
    }
    assert!(upward.is_empty(), "uses of a layer above: {upward:#?}");
}

#[test]
fn no_siblings_go_round_in_a_circle() {
    let mods = modules();
    let edges = edges(&mods);
    let parents: BTreeSet<Module> = mods
        .keys()
        .filter(|m| !m.is_empty())
        .map(|m| m[..m.len() - 1].to_vec())
        .collect();
    let mut circles = Vec::new();
    for parent in parents {
        let siblings: Vec<&Module> = mods
            .keys()
            .filter(|m| !m.is_empty() && m[..m.len() - 1] == parent[..])
            .collect();
        // Sibling a uses sibling b when a (or anything in it) uses b (or
        // anything in it).
        let within = |m: &Module, s: &Module| m.len() >= s.len() && m[..s.len()] == s[..];
        let graph: BTreeMap<&Module, BTreeSet<&Module>> = siblings
            .iter()
            .map(|a| {
                let uses = edges
                    .iter()
                    .filter(|(m, _)| within(m, a))
                    .flat_map(|(_, ts)| ts)
                    .filter_map(|t| siblings.iter().find(|s| within(t, s) && **s != *a))
                    .copied()
                    .collect();
                (*a, uses)
            })
            .collect();
        // A sibling that reaches itself again is on a circle.
        for start in &siblings {
            let mut seen = BTreeSet::new();
            let mut todo: Vec<&Module> = graph[start].iter().copied().collect();
            while let Some(m) = todo.pop() {
                if m == *start {
                    circles.push(name(start));
                    break;
                }
                if seen.insert(m) {
                    todo.extend(graph[m].iter().copied());
                }
            }
        }
    }
    assert!(circles.is_empty(), "modules on a circle: {circles:#?}");
}

#[test]
fn the_checks_see_the_uses_they_judge() {
    // The parser finds known uses, so that an empty verdict means
    // something.
    let edges = edges(&modules());
    let uses = |a: &[&str], b: &[&str]| {
        let a: Module = a.iter().map(|s| s.to_string()).collect();
        let b: Module = b.iter().map(|s| s.to_string()).collect();
        edges.get(&a).is_some_and(|t| t.contains(&b))
    };
    assert!(uses(&["job", "runner"], &["job", "profiles"]));
    assert!(uses(&["job", "profiles"], &["ingest", "pipeline"]));
    assert!(uses(&["api", "pinpoint"], &["job", "runner"]));
    assert!(uses(&["endpoints", "map"], &["ingest", "map"]));
}
