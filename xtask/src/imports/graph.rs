//! A crate's file graph and its cycles: the strongly connected components
//! (Tarjan), each reported as the shortest cycles that together use every
//! one of its edges.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    path::PathBuf,
};

/// One import that makes a file depend on another: where, and what it named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Import {
    pub(super) line: u32,
    pub(super) path: String,
}

/// The file graph of one crate: which file imports which (first import kept).
#[derive(Debug, Default)]
pub(super) struct Graph {
    pub(super) edges: BTreeMap<PathBuf, BTreeMap<PathBuf, Import>>,
}

/// Every cycle, each starting and ending at the same file.
pub(super) fn cycles(graph: &Graph) -> Vec<Vec<PathBuf>> {
    let mut out = Vec::new();
    for component in components(graph) {
        let inside = |from: &PathBuf| {
            graph
                .edges
                .get(from)
                .into_iter()
                .flat_map(|e| e.keys())
                .filter(|to| component.contains(*to))
        };
        let mut covered: BTreeSet<(PathBuf, PathBuf)> = BTreeSet::new();
        for from in &component {
            for to in inside(from) {
                if covered.contains(&(from.clone(), to.clone())) {
                    continue;
                }
                let Some(back) = shortest_path(to, from, &inside) else {
                    continue;
                };
                let cycle: Vec<PathBuf> = std::iter::once(from.clone()).chain(back).collect();
                for step in cycle.windows(2) {
                    covered.insert((step[0].clone(), step[1].clone()));
                }
                out.push(cycle);
            }
        }
    }
    out
}

/// Breadth-first from `from` to `to` (both included).
fn shortest_path<'a, I: Iterator<Item = &'a PathBuf>>(
    from: &'a PathBuf,
    to: &PathBuf,
    next: &impl Fn(&'a PathBuf) -> I,
) -> Option<Vec<PathBuf>> {
    let mut came_from: BTreeMap<&PathBuf, &PathBuf> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(at) = queue.pop_front() {
        if at == to {
            let mut path = vec![at.clone()];
            let mut cur = at;
            while let Some(prev) = came_from.get(cur) {
                path.push((*prev).clone());
                cur = prev;
            }
            path.reverse();
            return Some(path);
        }
        for n in next(at) {
            if n != from && !came_from.contains_key(n) {
                came_from.insert(n, at);
                queue.push_back(n);
            }
        }
    }
    None
}

/// Tarjan's strongly connected components with more than one file.
fn components(graph: &Graph) -> Vec<BTreeSet<PathBuf>> {
    let nodes: BTreeSet<&PathBuf> = graph
        .edges
        .iter()
        .flat_map(|(from, to)| std::iter::once(from).chain(to.keys()))
        .collect();
    let nodes: Vec<&PathBuf> = nodes.into_iter().collect();
    let index_of: BTreeMap<&PathBuf, usize> =
        nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let succ: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            graph
                .edges
                .get(*n)
                .into_iter()
                .flat_map(|e| e.keys())
                .map(|t| index_of[t])
                .collect()
        })
        .collect();
    let mut t = Tarjan {
        succ: &succ,
        index: vec![None; nodes.len()],
        low: vec![0; nodes.len()],
        on_stack: vec![false; nodes.len()],
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in 0..nodes.len() {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    t.found
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| c.into_iter().map(|i| nodes[i].clone()).collect())
        .collect()
}

struct Tarjan<'a> {
    succ: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    found: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    /// Recursive: a crate's file graph is a few hundred files deep at most.
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in &self.succ[v] {
            match self.index[w] {
                None => {
                    self.visit(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            self.found.push(component);
        }
    }
}
