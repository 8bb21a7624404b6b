//! Every reference a reader meets can be opened from a clone: each
//! `docs/….md` named in `src/`, `tests/`, `README.md`, `ARCHITECTURE.md` or
//! `docs/` exists, each Markdown link to a file of the repository (and its
//! `#anchor`, against the target's headings) resolves, and each "rule N" (or
//! "rules N and M", "rules N–M") is a rule `docs/protocol.md` has (its
//! `### Rule N` heading). A renamed document, a removed rule or a renumbered
//! one fails here, not in a reader's hands.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files whose references are checked, with their text (this file,
/// whose examples name documents and rules that do not exist, aside).
fn sources() -> Vec<(PathBuf, String)> {
    let mut files = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    for dir in ["src", "tests", "docs"] {
        walk(&root().join(dir), &mut files);
    }
    files
        .into_iter()
        .filter(|f| !f.ends_with("src/doc_links.rs"))
        .map(|f| {
            let text = std::fs::read_to_string(&f)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
            (f, text)
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs" || x == "md") {
            out.push(p);
        }
    }
}

fn shown(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// The rule numbers `docs/protocol.md` defines (`### Rule N — …`).
fn protocol_rules() -> BTreeSet<u32> {
    let doc = std::fs::read_to_string(root().join("docs/protocol.md")).expect("docs/protocol.md");
    doc.lines()
        .filter_map(|l| l.strip_prefix("### Rule "))
        .filter_map(|l| number_at(l).map(|(n, _)| n))
        .collect()
}

/// A number at the start of `s`, and the rest.
fn number_at(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok().map(|n| (n, &s[end..]))
}

/// Every rule number cited in `text`: "rule 6", "Rule 6", "rules 3 and 7",
/// "rules 3-5", "rules 3–5", "rules 3, 4 and 7".
fn cited_rules(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let lower = text.to_ascii_lowercase();
    let mut at = 0;
    while let Some(i) = lower[at..].find("rule") {
        let start = at + i;
        at = start + 4;
        // A whole word: not "rules_of" in an identifier, not "overrule".
        if start > 0 && lower[..start].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let mut rest = lower[at..].strip_prefix('s').unwrap_or(&lower[at..]);
        let Some(r) = rest.strip_prefix(' ') else {
            continue;
        };
        rest = r;
        let Some((first, mut tail)) = number_at(rest) else {
            continue;
        };
        out.push(first);
        let mut last = first;
        loop {
            let (range, after) = if let Some(t) = tail.strip_prefix('-') {
                (true, t)
            } else if let Some(t) = tail.strip_prefix('–') {
                (true, t)
            } else if let Some(t) = tail.strip_prefix(" and ") {
                (false, t)
            } else if let Some(t) = tail.strip_prefix(", ") {
                (false, t)
            } else {
                break;
            };
            let Some((n, t)) = number_at(after) else {
                break;
            };
            if range {
                out.extend(last + 1..=n);
            } else {
                out.push(n);
            }
            last = n;
            tail = t;
        }
    }
    out
}

/// GitHub's anchor of a heading: lower case, punctuation dropped but `-`
/// and `_`, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_fence = false;
    let mut out = BTreeSet::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// `](target)` links of a Markdown text, external ones left out.
fn links(markdown: &str) -> Vec<String> {
    markdown
        .match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &markdown[i + 2..];
            rest.find(')').map(|end| rest[..end].to_string())
        })
        .filter(|t| !t.contains("://") && !t.starts_with("mailto:") && !t.is_empty())
        .collect()
}

#[test]
fn every_docs_file_named_anywhere_exists() {
    let mut missing = Vec::new();
    for (file, text) in sources() {
        for (i, _) in text.match_indices("docs/") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
                .collect();
            let name = name.trim_end_matches('.');
            if !name.ends_with(".md") {
                continue;
            }
            if !root().join(name).is_file() {
                missing.push(format!("{}: {name}", shown(&file)));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documents named but absent:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_markdown_link_to_the_repository_resolves_with_its_anchor() {
    let mut broken = Vec::new();
    for (file, text) in sources() {
        if file.extension().is_none_or(|x| x != "md") {
            continue;
        }
        let dir = file.parent().expect("a file has a directory");
        for link in links(&text) {
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            if !target.exists() {
                broken.push(format!("{}: {link}: no such file", shown(&file)));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            let md = std::fs::read_to_string(&target).unwrap_or_default();
            if !anchors(&md).contains(anchor) {
                broken.push(format!(
                    "{}: {link}: {} has no heading with that anchor",
                    shown(&file),
                    shown(&target)
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_rule_cited_is_a_rule_of_the_protocol() {
    let rules = protocol_rules();
    assert!(
        (1..=10).all(|n| rules.contains(&n)),
        "docs/protocol.md keeps rules 1-10 under their old numbers: {rules:?}"
    );
    let mut unknown = Vec::new();
    for (file, text) in sources() {
        for n in cited_rules(&text) {
            if !rules.contains(&n) {
                unknown.push(format!("{}: rule {n}", shown(&file)));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "rules cited that docs/protocol.md does not have:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn citations_and_anchors_are_read_as_a_reader_would() {
    assert_eq!(cited_rules("see rule 6, and Rules 3 and 7"), vec![6, 3, 7]);
    assert_eq!(cited_rules("rules 3-5 (rules 9–10)"), vec![3, 4, 5, 9, 10]);
    assert_eq!(
        cited_rules("rules 3, 4 and 7; overrule 9; rule_of 8"),
        vec![3, 4, 7]
    );
    assert_eq!(
        slug("Rule 19 — Published tokens only move forward"),
        "rule-19--published-tokens-only-move-forward"
    );
    assert_eq!(slug("`cas_required` is missing"), "cas_required-is-missing");
    assert_eq!(
        links("[a](docs/a.md#x) [b](https://x.y/z) [c](#top)"),
        vec!["docs/a.md#x", "#top"]
    );
}

/// Issue 25: the contract lives in the repository. No source, test or
/// document cites the product brief that stays outside it (by its file
/// name or its section numbers); each cites `docs/…` instead.
#[test]
fn no_reference_points_outside_the_repository() {
    let outside = [concat!("SPEC", " §"), concat!("SPEC", ".md"), "../shared/"];
    let mut files = sources();
    let bench = root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&bench).expect("BENCHMARKS.md");
    files.push((bench, text));
    let found: Vec<String> = files
        .iter()
        .flat_map(|(file, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, line)| outside.iter().any(|o| line.contains(o)))
                .map(move |(i, line)| format!("{}:{}: {}", shown(file), i + 1, line.trim()))
        })
        .collect();
    assert!(
        found.is_empty(),
        "references to a document outside the repository (cite docs/ instead):\n{}",
        found.join("\n")
    );
}
