//! The control plane's import graph: no circle between any two files of
//! `control-plane/src`, and every import between top-level modules going
//! down the layer table in `docs/architecture.md` ("Layers of the control
//! plane").
//!
//! A file's imports are its `use` items and every path that starts with
//! `crate`, `super` or `self`, or with a child module it declares (how a
//! `mod.rs` calls its files). A path names the deepest file module it
//! reaches: `crate::store::db::Store` names `store/db.rs`, and
//! `crate::store::Store` names `store/mod.rs`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use syn::visit::Visit;

/// A module, as its path from the crate root (`["store", "db"]`).
type ModPath = Vec<String>;

/// Every file module of the crate and the file modules it imports.
struct Graph {
    edges: BTreeMap<ModPath, BTreeSet<ModPath>>,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/store/db.rs` -> `["store", "db"]`; `mod.rs` and `lib.rs` name their folder.
fn module_of(file: &Path) -> ModPath {
    let rel = file.strip_prefix(src()).expect("under src");
    let mut parts: ModPath = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "the crate root (lib.rs)".to_owned()
    } else {
        module.join("/")
    }
}

/// Collects the paths a file refers to, each resolved against the inline
/// module it appears in (`mod tests { use super::*; }` is the file itself).
struct Refs<'a> {
    /// The module the visitor is in (the file's, plus inline modules).
    here: ModPath,
    /// Child modules declared with `mod x;` in this file.
    children: BTreeSet<String>,
    files: &'a BTreeSet<ModPath>,
    found: BTreeSet<ModPath>,
}

impl Refs<'_> {
    fn resolve(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else {
            return;
        };
        let (mut module, rest): (ModPath, &[String]) = match first.as_str() {
            "crate" => (Vec::new(), &segments[1..]),
            "self" => (self.here.clone(), &segments[1..]),
            "super" => {
                let mut module = self.here.clone();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    module.pop();
                    rest = &rest[1..];
                }
                (module, rest)
            }
            child if self.children.contains(child) => (self.here.clone(), segments),
            _ => return,
        };
        for segment in rest {
            let mut deeper = module.clone();
            deeper.push(segment.clone());
            if !self.files.contains(&deeper) {
                break;
            }
            module = deeper;
        }
        // Inline modules live in their file: name the file module.
        while !self.files.contains(&module) && !module.is_empty() {
            module.pop();
        }
        self.found.insert(module);
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.resolve(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.resolve(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.resolve(&prefix.clone()),
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Refs<'_> {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if let Some((_, items)) = &item.content {
            self.here.push(item.ident.to_string());
            for item in items {
                self.visit_item(item);
            }
            self.here.pop();
        }
    }

    /// `pub(super)` says who may see an item; it imports nothing.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve(&segments);
        syn::visit::visit_path(self, path);
    }
}

fn graph() -> Graph {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(f)).collect();
    let mut edges = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        let ast = syn::parse_file(&text)
            .unwrap_or_else(|e| panic!("cannot parse {}: {e}", file.display()));
        let children = ast
            .items
            .iter()
            .filter_map(|item| match item {
                syn::Item::Mod(m) if m.content.is_none() => Some(m.ident.to_string()),
                _ => None,
            })
            .collect();
        let me = module_of(file);
        let mut refs = Refs {
            here: me.clone(),
            children,
            files: &modules,
            found: BTreeSet::new(),
        };
        refs.visit_file(&ast);
        refs.found.remove(&me);
        edges.insert(me, refs.found);
    }
    Graph { edges }
}

/// Every circle of imports, each as the files around it.
fn circles(graph: &Graph) -> Vec<Vec<ModPath>> {
    // Tarjan's strongly connected components: any with two or more files is a circle.
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g ModPath, usize>,
        low: BTreeMap<&'g ModPath, usize>,
        stack: Vec<&'g ModPath>,
        on_stack: BTreeSet<&'g ModPath>,
        found: Vec<Vec<ModPath>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g ModPath) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.edges.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.found
}

/// The layer of each top-level module, from the table in docs/architecture.md.
fn layers() -> BTreeMap<String, u32> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/architecture.md");
    let text = std::fs::read_to_string(&doc).expect("read docs/architecture.md");
    let section = text
        .split("## Layers of the control plane")
        .nth(1)
        .expect("docs/architecture.md has a \"Layers of the control plane\" section");
    let mut layers = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(layer), Some(modules)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Ok(layer) = layer.parse::<u32>() else {
            continue;
        };
        for module in modules.split(',') {
            let module = module.trim().trim_matches('`');
            assert!(
                layers.insert(module.to_owned(), layer).is_none(),
                "{module} is listed twice in the layer table"
            );
        }
    }
    assert!(!layers.is_empty(), "the layer table has no rows");
    layers
}

#[test]
fn no_file_imports_itself_in_a_circle() {
    let circles = circles(&graph());
    let shown: Vec<String> = circles
        .iter()
        .map(|c| c.iter().map(|m| name(m)).collect::<Vec<_>>().join(" <-> "))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles in control-plane/src:\n  {}",
        shown.join("\n  ")
    );
}

#[test]
fn imports_go_down_the_layer_table() {
    let graph = graph();
    let layers = layers();
    let mut wrong = Vec::new();
    for (from, targets) in &graph.edges {
        let Some(top) = from.first() else {
            continue; // lib.rs declares and re-exports everything.
        };
        let Some(&from_layer) = layers.get(top) else {
            wrong.push(format!(
                "{} is in no layer of docs/architecture.md",
                name(from)
            ));
            continue;
        };
        for to in targets {
            let Some(target_top) = to.first() else {
                wrong.push(format!(
                    "{} imports from {}; import from the module that defines the item",
                    name(from),
                    name(to)
                ));
                continue;
            };
            if target_top == top {
                continue;
            }
            match layers.get(target_top) {
                Some(&layer) if layer < from_layer => {}
                Some(&layer) => wrong.push(format!(
                    "{} (layer {from_layer}) imports {} (layer {layer})",
                    name(from),
                    name(to)
                )),
                None => wrong.push(format!(
                    "{} is in no layer of docs/architecture.md",
                    name(to)
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer table:\n  {}",
        wrong.join("\n  ")
    );
}

/// The checks above find what they should: a circle through two files, an
/// import up the table, and an import from the crate root.
#[test]
fn the_checks_catch_circles_and_upward_imports() {
    let m = |s: &str| -> ModPath { s.split('/').map(str::to_owned).collect() };
    let edges = BTreeMap::from([
        (m("store/apis"), BTreeSet::from([m("store/keys")])),
        (m("store/keys"), BTreeSet::from([m("store/apis")])),
        (m("store/db"), BTreeSet::new()),
    ]);
    assert_eq!(
        circles(&Graph { edges }),
        vec![vec![m("store/apis"), m("store/keys")]]
    );

    // Paths resolve to the deepest file module they reach.
    let files = BTreeSet::from([
        Vec::new(),
        m("store"),
        m("store/db"),
        m("status"),
        m("admin"),
        m("admin/keys"),
    ]);
    let mut refs = Refs {
        here: m("admin/keys"),
        children: BTreeSet::new(),
        files: &files,
        found: BTreeSet::new(),
    };
    let file = syn::parse_file(
        "use crate::store::db::Store; use super::super::status::x; \
         pub(super) fn f() { crate::store::Thing::new(); other::path(); } \
         mod tests { use super::*; }",
    )
    .expect("parse");
    refs.visit_file(&file);
    assert_eq!(
        refs.found,
        BTreeSet::from([m("store/db"), m("status"), m("store"), m("admin/keys")])
    );
    assert!(layers()["store"] < layers()["admin"]);
}
