//! Reading and validation of a rule file (`load_file`, `parse`), one step
//! per part of the file (settings, prefix lists, sources, limits, ban,
//! rules). Each step records what is wrong and goes on, so that one pass
//! reports every error of a file.

use std::{collections::HashMap, path::Path};

use filter_common::{DEFAULT_SOURCES, MAX_LIMITS, MAX_PREFIXES, MAX_RULES};
use sha2::{Digest as _, Sha256};
use toml::Spanned;

use super::{
    adaptive,
    compile::compile_chains,
    error::{Ctx, RuleError, line_col},
    files::{self, FileError},
    guard,
    limits::{Limits, limit, valid_name},
    prefixes::{Prefix, parse_list, parse_prefix},
    rule::rule_spec,
    schema::FileSchema,
    set::{FragmentPolicy, Mode, RuleSet, RuleSpec},
    values::{duration, int_in},
};

/// A rule file that cannot be used: unreadable, or every problem in it.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<RuleError>),
}

/// Reads and validates a rule file; list files are read relative to it.
pub fn load_file(path: &Path) -> Result<RuleSet, RulesError> {
    let text = files::read_rules(path)?;
    parse_in(
        &path.display().to_string(),
        &text,
        path.parent().unwrap_or(Path::new(".")),
    )
    .map_err(RulesError::Invalid)
}

/// Validates rule-file text; `file` names it in errors; list files are
/// read relative to the current directory. The first error in the file.
pub fn parse(file: &str, text: &str) -> Result<RuleSet, RuleError> {
    parse_in(file, text, Path::new(".")).map_err(|mut errors| errors.swap_remove(0))
}

/// Validates `text` (named `file` in errors); list files are read relative
/// to `base`. Every error found, in file order, or the rule set.
pub fn parse_in(file: &str, text: &str, base: &Path) -> Result<RuleSet, Vec<RuleError>> {
    let mut p = Parser {
        cx: Ctx { file, text },
        errors: Vec::new(),
    };
    let set = p.rule_set(base);
    match set {
        Some(set) if p.errors.is_empty() => Ok(set),
        _ => {
            p.errors.sort_by_key(|e| (e.file != file, e.line, e.column));
            Err(p.errors)
        }
    }
}

struct Parser<'a> {
    cx: Ctx<'a>,
    errors: Vec<RuleError>,
}

impl Parser<'_> {
    /// Keeps a step's value, or records its error.
    fn keep<T>(&mut self, r: Result<T, RuleError>) -> Option<T> {
        r.map_err(|e| self.errors.push(e)).ok()
    }

    fn rule_set(&mut self, base: &Path) -> Option<RuleSet> {
        let cx = &self.cx;
        if cx.text.trim().is_empty() {
            let e = cx.err(
                0..0,
                "empty rule file: it needs at least one [[rule]] (see rules/default.toml)",
            );
            self.errors.push(e);
            return None;
        }
        let schema: FileSchema = match toml::from_str(cx.text) {
            Ok(s) => s,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let e = cx.err(span.clone(), toml_message(&e, cx.text.get(span.start..)));
                self.errors.push(e);
                return None;
            }
        };
        let settings = self.settings(&schema);
        let mut hasher = Sha256::new();
        hasher.update(self.cx.text.as_bytes());
        let allow = self.prefix_lists(&schema.allow, &schema.allow_files, base, &mut hasher);
        let deny = self.prefix_lists(&schema.deny, &schema.deny_files, base, &mut hasher);
        self.allow_and_deny(&schema, &allow);
        let (src_prefix_v4, src_prefix_v6, table_size) = self.sources(&schema);
        let (limits, default_limit) = self.limits(&schema);
        let (ban_after_ns, ban_for_ns) = self.ban(&schema, &limits);
        self.something_to_enforce(&schema, &allow, &deny, &limits);
        let (rules, loaded) = self.rules(&schema, &limits, default_limit);
        let upstream = schema
            .upstream
            .as_ref()
            .and_then(|u| super::upstream::parse(&self.cx, u, &mut self.errors));
        let adaptive = schema.adaptive.as_ref().and_then(|a| {
            let r = adaptive::parse(&self.cx, a, &limits);
            self.keep(r)
        });
        let reply_guard = guard::reply_guard(&self.cx, schema.reply_guard.as_ref());
        let reply_guard = self.keep(reply_guard).flatten();
        let never_ban = self.prefix_lists(&schema.never_ban, &[], base, &mut hasher);
        let (mode, fragments, fragment_memory_ns) = settings?;
        let set = RuleSet {
            mode,
            fragments,
            fragment_memory_ns,
            allow,
            deny,
            src_prefix_v4,
            src_prefix_v6,
            table_size,
            limits,
            default_limit,
            ban_after_ns,
            ban_for_ns,
            rules,
            upstream,
            adaptive,
            blocks: Vec::new(),
            imports: Vec::new(),
            reply_guard,
            never_ban,
            digest: hasher.finalize().into(),
        };
        // Chain limits depend on the whole set: report them at the rule
        // that overflows.
        if let Err(overflow) = compile_chains(&set) {
            let r = &schema.rules[loaded[overflow.rule]];
            let e = self.cx.err(r.get_ref().name.span(), overflow.message);
            self.errors.push(e);
        }
        Some(set)
    }

    fn settings(&mut self, schema: &FileSchema) -> Option<(Mode, FragmentPolicy, u64)> {
        let cx = &self.cx;
        let mode = match schema.mode.as_ref() {
            None => Ok(Mode::Enforce),
            Some(m) => match m.get_ref().as_str() {
                "enforce" => Ok(Mode::Enforce),
                "monitor" => Ok(Mode::Monitor),
                other => Err(cx.unknown(m.span(), "mode", other, &["enforce", "monitor"])),
            },
        };
        let fragments = match schema.fragments.as_ref() {
            None => Ok(FragmentPolicy::Pass),
            Some(m) => match m.get_ref().as_str() {
                "pass" => Ok(FragmentPolicy::Pass),
                "drop" => Ok(FragmentPolicy::Drop),
                other => Err(cx.unknown(m.span(), "fragment policy", other, &["pass", "drop"])),
            },
        };
        let memory = match &schema.fragment_memory {
            None => Ok(30_000_000_000),
            Some(d) => duration(cx, d),
        };
        let (mode, fragments, memory) = (self.keep(mode), self.keep(fragments), self.keep(memory));
        Some((mode?, fragments?, memory?))
    }

    /// Inline prefixes plus those of the list files, each error at its place.
    fn prefix_lists(
        &mut self,
        inline: &[Spanned<String>],
        lists: &[Spanned<String>],
        base: &Path,
        hasher: &mut Sha256,
    ) -> Vec<Prefix> {
        let mut out = Vec::new();
        for p in inline {
            let r = parse_prefix(p.get_ref()).map_err(|e| self.cx.err(p.span(), e.to_string()));
            out.extend(self.keep(r));
        }
        for f in lists {
            let path = base.join(f.get_ref());
            let text = match files::read_list(&path) {
                Ok(t) => t,
                Err(e) => {
                    let e = self.cx.err(f.span(), e.to_string());
                    self.errors.push(e);
                    continue;
                }
            };
            hasher.update(text.as_bytes());
            match parse_list(&text) {
                Ok(list) => out.extend(list),
                Err(e) => self.errors.push(RuleError {
                    file: path.display().to_string(),
                    line: e.line,
                    column: e.column,
                    message: e.error.to_string(),
                }),
            }
        }
        out.sort();
        out.dedup();
        if out.len() > MAX_PREFIXES as usize {
            let e = self.cx.err(
                lists.first().map_or(0..0, |f| f.span()),
                format!("{} prefixes: at most {MAX_PREFIXES} per list", out.len()),
            );
            self.errors.push(e);
        }
        out
    }

    fn allow_and_deny(&mut self, schema: &FileSchema, allow: &[Prefix]) {
        for d in &schema.deny {
            if let Ok(p) = parse_prefix(d.get_ref())
                && allow.contains(&p)
            {
                let e = self.cx.err(
                    d.span(),
                    format!(
                        "{p} is in both allow and deny: allow wins, so the deny entry does nothing; remove one"
                    ),
                );
                self.errors.push(e);
            }
        }
    }

    fn sources(&mut self, schema: &FileSchema) -> (u8, u8, u32) {
        let (mut v4, mut v6, mut table_size) = (32u8, 64u8, DEFAULT_SOURCES);
        if let Some(src) = &schema.sources {
            if let Some(v) = &src.ipv4_prefix {
                let r = int_in(&self.cx, v, "ipv4_prefix", 1, 32);
                v4 = self.keep(r).map_or(v4, |n| n as u8);
            }
            if let Some(v) = &src.ipv6_prefix {
                let r = int_in(&self.cx, v, "ipv6_prefix", 1, 128);
                v6 = self.keep(r).map_or(v6, |n| n as u8);
            }
            if let Some(v) = &src.table_size {
                let r = int_in(&self.cx, v, "table_size", 1024, 16 * 1024 * 1024);
                table_size = self.keep(r).map_or(table_size, |n| n as u32);
            }
        }
        (v4, v6, table_size)
    }

    /// The limits and the id every packet meets at the per-source step.
    fn limits(&mut self, schema: &FileSchema) -> (Limits, u32) {
        let mut limits = Vec::new();
        if let Some(l) = &schema.per_source {
            let r = limit(&self.cx, l);
            // A broken limit keeps its place, so later ids stay right.
            limits.push(("per_source".to_string(), self.keep(r).unwrap_or_default()));
        }
        for (name, l) in &schema.limits {
            if limits.len() + 1 >= MAX_LIMITS as usize {
                let e = self.cx.err(
                    name.span(),
                    format!(
                        "too many limits: at most {} ([per_source] included)",
                        MAX_LIMITS - 1
                    ),
                );
                self.errors.push(e);
                break;
            }
            if !valid_name(name.get_ref()) {
                let e = self.cx.err(
                    name.span(),
                    format!(
                        "bad limit name {:?}: use a-z, A-Z, 0-9, '-' and '_'",
                        name.get_ref()
                    ),
                );
                self.errors.push(e);
            }
            let r = limit(&self.cx, l);
            limits.push((name.get_ref().clone(), self.keep(r).unwrap_or_default()));
        }
        (limits, u32::from(schema.per_source.is_some()))
    }

    fn ban(&mut self, schema: &FileSchema, limits: &Limits) -> (u64, u64) {
        let Some(b) = &schema.ban else {
            return (0, 0);
        };
        if limits.is_empty() {
            let e = self.cx.err(
                b.after.span(),
                "[ban] bans sources that exceed a limit, but no [per_source] or [limits] is set",
            );
            self.errors.push(e);
        }
        let after = duration(&self.cx, &b.after);
        let duration = duration(&self.cx, &b.duration);
        (
            self.keep(after).unwrap_or(0),
            self.keep(duration).unwrap_or(0),
        )
    }

    fn something_to_enforce(
        &mut self,
        schema: &FileSchema,
        allow: &[Prefix],
        deny: &[Prefix],
        limits: &Limits,
    ) {
        if schema.rules.is_empty() && allow.is_empty() && deny.is_empty() && limits.is_empty() {
            let e = self.cx.err(
                0..0,
                "no [[rule]], allow, deny or limit in the file: nothing to enforce",
            );
            self.errors.push(e);
        }
        if schema.rules.len() > MAX_RULES as usize {
            let e = self.cx.err(
                schema.rules[MAX_RULES as usize].span(),
                format!("too many rules: at most {MAX_RULES} are allowed"),
            );
            self.errors.push(e);
        }
    }

    /// The enabled rules, and for each its index in the file.
    fn rules(
        &mut self,
        schema: &FileSchema,
        limits: &Limits,
        default_limit: u32,
    ) -> (Vec<RuleSpec>, Vec<usize>) {
        let mut rules = Vec::with_capacity(schema.rules.len());
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut loaded = Vec::new();
        for (i, r) in schema.rules.iter().enumerate().take(MAX_RULES as usize) {
            let r = r.get_ref();
            let name = &r.name;
            if let Some(first) = names.insert(name.get_ref(), name.span().start) {
                let (line, _) = line_col(self.cx.text, first);
                let e = self.cx.err(
                    name.span(),
                    format!(
                        "rule name {:?} is already used on line {line}: names must be unique",
                        name.get_ref()
                    ),
                );
                self.errors.push(e);
            }
            let spec = rule_spec(&self.cx, r, limits, default_limit);
            if let Some(spec) = self.keep(spec)
                && r.enabled != Some(false)
            {
                rules.push(spec);
                loaded.push(i);
            }
        }
        (rules, loaded)
    }
}

/// The toml crate's message, never empty; `at` is the text from the error
/// on. A control character gets its own message: toml's says nothing or
/// little about a character the reader cannot see. Also for the other TOML
/// files filterctl reads (replay's `--expect`).
pub(crate) fn toml_message(e: &toml::de::Error, at: Option<&str>) -> String {
    let m = e.message().trim();
    if let Some(c) = at.and_then(|t| t.chars().next())
        && c.is_control()
        && !matches!(c, '\t' | '\n' | '\r')
    {
        let name = if c == '\u{7f}' { " (DEL)" } else { "" };
        format!(
            "control character U+{:04X}{name} is not allowed in TOML, not even in a comment or a string: remove it",
            c as u32
        )
    } else if m.is_empty() {
        "this is not valid TOML".to_string()
    } else {
        m.to_string()
    }
}
