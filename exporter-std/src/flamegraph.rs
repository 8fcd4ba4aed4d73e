//! Flamegraphs: the folded-stack text of Brendan Gregg's `stackcollapse-*`
//! scripts, and an SVG rendered from it by `inferno`.
//!
//! Folded format, one line per distinct stack, frames root first and joined
//! by `;`, then a space and the summed value of one sample type:
//!
//! ```text
//!  main;app::load;alloc::vec::Vec<T>::push;?? 1024
//!  main;app::load 100
//!  └─root─┘       └── leaf (inlined frames expanded)   └ value
//! ```
//!
//! Lines are sorted by stack, so output is deterministic. Samples whose value
//! is zero or negative are left out. `;` separates frames, so a `;` inside a
//! name (Rust array types such as `[u8; 4]`) becomes `:`, and line breaks in
//! names become spaces. A sample without locations is drawn as `[unknown]`;
//! an unsymbolized location as `??` (see [`Profile::stack_names`]).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use inferno::flamegraph::{self, Options};

use crate::pprof::write_atomically;
use crate::profile::{Profile, Sample};

/// The frame drawn for a sample that has no locations at all.
const UNKNOWN_STACK: &str = "[unknown]";

/// The folded stacks of `profile` for sample type `sample_index` (an index
/// into [`Profile::sample_types`]); empty if there is no such type or no
/// positive value.
pub fn folded(profile: &Profile, sample_index: usize) -> String {
    let mut stacks: BTreeMap<String, i64> = BTreeMap::new();
    for sample in &profile.samples {
        let Some(&value) = sample.values.get(sample_index) else {
            continue;
        };
        if value > 0 {
            let total = stacks.entry(folded_stack(profile, sample)).or_insert(0);
            *total = total.saturating_add(value);
        }
    }
    let mut out = String::new();
    for (stack, value) in stacks {
        out.push_str(&stack);
        out.push(' ');
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}

/// One sample's frames, root first, joined by `;`.
fn folded_stack(profile: &Profile, sample: &Sample) -> String {
    let names = profile.stack_names(sample);
    if names.is_empty() {
        return UNKNOWN_STACK.to_owned();
    }
    let mut stack = String::new();
    for (depth, name) in names.iter().rev().enumerate() {
        if depth > 0 {
            stack.push(';');
        }
        stack.extend(name.chars().map(|c| match c {
            ';' => ':',
            '\n' | '\r' => ' ',
            c => c,
        }));
    }
    stack
}

/// Renders the flamegraph of sample type `sample_index` as an SVG titled
/// `title` and writes it atomically to `path` (as
/// [`pprof::write_file`](crate::pprof::write_file) does). A profile without
/// samples of that type still yields a valid SVG that says so.
pub fn write_svg(
    profile: &Profile,
    sample_index: usize,
    title: &str,
    path: &Path,
) -> io::Result<()> {
    write_atomically(path, &svg(profile, sample_index, title)?)
}

fn svg(profile: &Profile, sample_index: usize, title: &str) -> io::Result<Vec<u8>> {
    let folded = folded(profile, sample_index);
    if folded.is_empty() {
        return Ok(empty_svg(title).into_bytes());
    }
    let mut options = Options::default();
    title.clone_into(&mut options.title);
    if let Some(sample_type) = profile.sample_types.get(sample_index) {
        sample_type.unit.clone_into(&mut options.count_name);
    }
    // Colour by a hash of the name, so a function keeps its colour across
    // graphs and runs.
    options.hash = true;
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options, folded.lines(), &mut svg)?;
    Ok(svg)
}

/// A minimal SVG with the title and "no samples", since `inferno` refuses
/// empty input.
fn empty_svg(title: &str) -> String {
    format!(
        concat!(
            "<?xml version=\"1.0\" standalone=\"no\"?>\n",
            "<svg version=\"1.1\" width=\"1200\" height=\"70\" xmlns=\"http://www.w3.org/2000/svg\">\n",
            "<text x=\"600\" y=\"24\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"17\">{}</text>\n",
            "<text x=\"600\" y=\"52\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"12\">no samples</text>\n",
            "</svg>\n"
        ),
        xml_escape(title)
    )
}

/// Escapes the five characters XML reserves.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pprof::fixture;

    #[test]
    fn folded_merges_sorts_and_skips_zero() {
        let profile = fixture::heap();
        let alloc_space = profile.sample_type_index("alloc_space").expect("type");
        assert_eq!(
            folded(&profile, alloc_space),
            "main;app::load 100\n\
             main;app::load;alloc::vec::Vec<T>::push 3010\n\
             main;app::load;alloc::vec::Vec<T>::push;?? 1024\n"
        );
        let inuse_space = profile.sample_type_index("inuse_space").expect("type");
        assert_eq!(
            folded(&profile, inuse_space),
            "main;app::load;alloc::vec::Vec<T>::push 3010\n\
             main;app::load;alloc::vec::Vec<T>::push;?? 512\n"
        );
        assert_eq!(folded(&profile, 99), "");
    }

    #[test]
    fn folded_escapes_separators_and_names_empty_stacks() {
        let mut profile = fixture::heap();
        profile.functions[2].name = "<[u8; 4] as app::Load>::load\n".to_owned();
        profile.samples[1].locations.clear();
        assert_eq!(
            folded(&profile, 0),
            "<[u8: 4] as app::Load>::load ;app::load;alloc::vec::Vec<T>::push 4\n\
             <[u8: 4] as app::Load>::load ;app::load;alloc::vec::Vec<T>::push;?? 2\n\
             [unknown] 1\n"
        );
    }

    #[test]
    fn svg_holds_function_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("heap.svg");
        write_svg(&fixture::heap(), 1, "heap <alloc_space>", &path).expect("write svg");
        let svg = std::fs::read_to_string(&path).expect("read svg");
        assert!(svg.starts_with("<?xml"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("app::load"));
        assert!(svg.contains("bytes"));
    }

    #[test]
    fn empty_profile_still_renders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.svg");
        let mut profile = fixture::heap();
        profile.samples.clear();
        write_svg(&profile, 0, "a & b", &path).expect("write svg");
        let svg = std::fs::read_to_string(&path).expect("read svg");
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("a &amp; b") && svg.contains("no samples"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
