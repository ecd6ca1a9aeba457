//! Dependency resolution with resolvo.
//!
//! resolvo thinks in package names; rpm thinks in capabilities (Provides, file paths). A
//! requirement on a capability becomes a union of version sets, one per package name that
//! provides it, each filtering that name's candidates to the ones whose provides match.
//! Conflicts and Obsoletes become resolvo constraints ("if a package of that name is chosen,
//! it must not match"). One version per name; the newest (rpm EVR order) is tried first.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use anyhow::{Result, bail};
use resolvo::{
    Candidates, Condition, ConditionId, ConditionalRequirement, DenseIndex, Dependencies,
    DependencyProvider, HintDependenciesAvailable, Interner, KnownDependencies, LogicalOperator,
    NameId, Problem, Requirement, SolvableId, Solver, SolverCache, StringId, UnsolvableOrCancelled,
    VersionSetId, VersionSetUnionId,
};

use super::package::{Dep, EvrS, Op, PkgInfo};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum VsKind {
    /// Candidates that provide this capability (name, file path, or Provides).
    Provides(Dep),
    /// Candidates that do not provide it (Conflicts).
    NotProvides(Dep),
    /// Candidates whose own EVR does not match (Obsoletes).
    NotObsoleted(Dep),
    /// Any candidate of the name (treefile `packages`), optionally restricted to one repo.
    Any(Option<String>),
}

struct Pool<'a> {
    pkgs: &'a [PkgInfo],
    names: RefCell<Vec<String>>,
    name_ids: RefCell<HashMap<String, NameId>>,
    by_name: HashMap<String, Vec<SolvableId>>,
    /// capability name -> solvables providing it (Provides entries and files).
    providers: HashMap<String, Vec<SolvableId>>,
    vsets: RefCell<Vec<(NameId, VsKind)>>,
    vset_ids: RefCell<HashMap<(NameId, VsKind), VersionSetId>>,
    unions: RefCell<Vec<Vec<VersionSetId>>>,
    strings: RefCell<Vec<String>>,
    conditions: RefCell<Vec<Condition>>,
    /// Reasons a requirement could not be expressed (bad rich dependency syntax).
    deps_cache: RefCell<HashMap<SolvableId, KnownDependencies>>,
}

fn sid(i: usize) -> SolvableId {
    SolvableId::from_index(i)
}

impl<'a> Pool<'a> {
    fn new(pkgs: &'a [PkgInfo]) -> Self {
        let mut by_name: HashMap<String, Vec<SolvableId>> = HashMap::new();
        let mut providers: HashMap<String, Vec<SolvableId>> = HashMap::new();
        for (i, p) in pkgs.iter().enumerate() {
            by_name.entry(p.name.clone()).or_default().push(sid(i));
            let mut caps: BTreeSet<&str> = p.provides.iter().map(|d| d.name.as_str()).collect();
            caps.insert(&p.name);
            caps.extend(p.files.iter().map(String::as_str));
            for c in caps {
                providers.entry(c.to_string()).or_default().push(sid(i));
            }
        }
        Pool {
            pkgs,
            names: RefCell::default(),
            name_ids: RefCell::default(),
            by_name,
            providers,
            vsets: RefCell::default(),
            vset_ids: RefCell::default(),
            unions: RefCell::default(),
            strings: RefCell::default(),
            conditions: RefCell::default(),
            deps_cache: RefCell::default(),
        }
    }

    fn pkg(&self, s: SolvableId) -> &PkgInfo {
        &self.pkgs[s.to_index()]
    }

    fn name(&self, n: &str) -> NameId {
        if let Some(id) = self.name_ids.borrow().get(n) {
            return *id;
        }
        let mut names = self.names.borrow_mut();
        let id = NameId::from_index(names.len());
        names.push(n.to_string());
        self.name_ids.borrow_mut().insert(n.to_string(), id);
        id
    }

    fn vset(&self, name: NameId, kind: VsKind) -> VersionSetId {
        let key = (name, kind);
        if let Some(id) = self.vset_ids.borrow().get(&key) {
            return *id;
        }
        let mut v = self.vsets.borrow_mut();
        let id = VersionSetId(v.len() as u32);
        v.push(key.clone());
        self.vset_ids.borrow_mut().insert(key, id);
        id
    }

    /// Whether solvable `s` provides `dep` (by its Provides, its own name, or a file).
    fn provides(&self, s: SolvableId, dep: &Dep) -> bool {
        let p = self.pkg(s);
        if dep.name.starts_with('/') && p.files.iter().any(|f| f == &dep.name) {
            return true;
        }
        if p.name == dep.name {
            let own = Dep {
                name: p.name.clone(),
                constraint: Some((Op::Eq, p.evr.clone())),
            };
            if own.provide_satisfies(dep) {
                return true;
            }
        }
        p.provides
            .iter()
            .any(|pr| pr.name == dep.name && pr.provide_satisfies(dep))
    }

    /// Package names with at least one candidate providing `dep`'s capability name.
    fn provider_names(&self, dep: &Dep) -> Vec<String> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        for s in self.providers.get(&dep.name).into_iter().flatten() {
            if self.provides(*s, dep) {
                names.insert(self.pkg(*s).name.clone());
            }
        }
        // Try the package literally named like the capability first.
        let mut v: Vec<String> = names.into_iter().collect();
        v.sort_by_key(|n| n != &dep.name);
        v
    }

    /// A requirement on a capability (a union over the names that provide it).
    fn requirement(&self, dep: &Dep) -> Requirement {
        let vss = self.dep_vsets(dep);
        if vss.len() == 1 {
            Requirement::Single(vss[0])
        } else {
            let mut u = self.unions.borrow_mut();
            u.push(vss);
            Requirement::Union(VersionSetUnionId((u.len() - 1) as u32))
        }
    }

    fn dep_vsets(&self, dep: &Dep) -> Vec<VersionSetId> {
        let names = self.provider_names(dep);
        if names.is_empty() {
            // A name with no candidates: resolvo reports "no candidates were found for DEP".
            return vec![self.vset(self.name(&dep.name), VsKind::Provides(dep.clone()))];
        }
        names
            .iter()
            .map(|n| self.vset(self.name(n), VsKind::Provides(dep.clone())))
            .collect()
    }

    fn condition(&self, c: Condition) -> ConditionId {
        let mut v = self.conditions.borrow_mut();
        v.push(c);
        ConditionId::new(v.len() as u32)
    }

    fn dep_condition(&self, dep: &Dep) -> ConditionId {
        let vss = self.dep_vsets(dep);
        let mut acc = self.condition(Condition::Requirement(vss[0]));
        for vs in &vss[1..] {
            let c = self.condition(Condition::Requirement(*vs));
            acc = self.condition(Condition::Binary(LogicalOperator::Or, acc, c));
        }
        acc
    }

    fn rich_to_reqs(&self, r: &Rich, out: &mut Vec<ConditionalRequirement>) {
        match r {
            Rich::Atom(d) => out.push(self.requirement(d).into()),
            Rich::And(v) => v.iter().for_each(|x| self.rich_to_reqs(x, out)),
            Rich::Or(v) => {
                let mut atoms = Vec::new();
                for x in v {
                    x.atoms(&mut atoms);
                }
                let mut vss = Vec::new();
                for a in atoms {
                    vss.extend(self.dep_vsets(&a));
                }
                let mut u = self.unions.borrow_mut();
                u.push(vss);
                out.push(Requirement::Union(VersionSetUnionId((u.len() - 1) as u32)).into());
            }
            Rich::If(then, cond) => {
                let mut inner = Vec::new();
                self.rich_to_reqs(then, &mut inner);
                let mut atoms = Vec::new();
                cond.atoms(&mut atoms);
                let Some(first) = atoms.first() else { return };
                let c = self.dep_condition(first);
                for req in inner {
                    out.push(req.requirement.with_condition(c));
                }
            }
        }
    }

    fn compute_deps(&self, s: SolvableId) -> KnownDependencies {
        let p = self.pkg(s);
        let mut deps = KnownDependencies::default();
        for (name, c) in &p.requires {
            if name.starts_with("rpmlib(") {
                continue;
            }
            if name.starts_with('(') {
                match parse_rich(name) {
                    Ok(r) => self.rich_to_reqs(&r, &mut deps.requirements),
                    Err(e) => tracing::warn!(
                        "{}: ignoring unparsable rich dependency {name}: {e}",
                        p.nevra()
                    ),
                }
                continue;
            }
            let dep = Dep {
                name: name.clone(),
                constraint: c.clone(),
            };
            // A package satisfying its own requirement needs no clause.
            if self.provides(s, &dep) {
                continue;
            }
            deps.requirements.push(self.requirement(&dep).into());
        }
        for c in &p.conflicts {
            for n in self.provider_names(c) {
                if n != p.name {
                    deps.constrains
                        .push(self.vset(self.name(&n), VsKind::NotProvides(c.clone())));
                }
            }
        }
        for o in &p.obsoletes {
            if o.name != p.name && self.by_name.contains_key(&o.name) {
                deps.constrains
                    .push(self.vset(self.name(&o.name), VsKind::NotObsoleted(o.clone())));
            }
        }
        deps
    }

    fn matches(&self, s: SolvableId, kind: &VsKind) -> bool {
        match kind {
            VsKind::Provides(d) => self.provides(s, d),
            VsKind::NotProvides(d) => !self.provides(s, d),
            VsKind::NotObsoleted(d) => !d.evr_matches(&self.pkg(s).evr),
            VsKind::Any(None) => true,
            VsKind::Any(Some(repo)) => &self.pkg(s).repo == repo,
        }
    }
}

impl Interner for Pool<'_> {
    type NameId = NameId;
    type SolvableId = SolvableId;

    fn display_solvable(&self, s: SolvableId) -> impl std::fmt::Display + '_ {
        let p = self.pkg(s);
        format!("{}-{}.{}", p.name, p.evr, p.arch)
    }
    fn display_name(&self, name: NameId) -> impl std::fmt::Display + '_ {
        self.names.borrow()[name.to_index()].clone()
    }
    fn display_version_set(&self, vs: VersionSetId) -> impl std::fmt::Display + '_ {
        let (name, kind) = self.vsets.borrow()[vs.0 as usize].clone();
        let name = self.names.borrow()[name.to_index()].clone();
        let show = |d: &Dep| {
            if d.name == name {
                d.constraint.as_ref().map_or("*".to_string(), |_| {
                    d.to_string()[d.name.len() + 1..].to_string()
                })
            } else {
                format!("(providing {d})")
            }
        };
        match kind {
            VsKind::Provides(d) => show(&d),
            VsKind::NotProvides(d) => format!("(not providing {d}: conflict)"),
            VsKind::NotObsoleted(d) => format!("(not obsoleted by {d})"),
            VsKind::Any(None) => "*".into(),
            VsKind::Any(Some(r)) => format!("* from repo {r}"),
        }
    }
    fn display_string(&self, id: StringId) -> impl std::fmt::Display + '_ {
        self.strings.borrow()[id.0 as usize].clone()
    }
    fn version_set_name(&self, vs: VersionSetId) -> NameId {
        self.vsets.borrow()[vs.0 as usize].0
    }
    fn solvable_name(&self, s: SolvableId) -> NameId {
        self.name(&self.pkg(s).name)
    }
    fn version_sets_in_union(&self, u: VersionSetUnionId) -> impl Iterator<Item = VersionSetId> {
        self.unions.borrow()[u.0 as usize].clone().into_iter()
    }
    fn resolve_condition(&self, c: ConditionId) -> Condition {
        self.conditions.borrow()[c.as_u32() as usize - 1].clone()
    }
}

impl DependencyProvider for Pool<'_> {
    async fn filter_candidates(
        &self,
        candidates: &[SolvableId],
        vs: VersionSetId,
        inverse: bool,
    ) -> Vec<SolvableId> {
        let kind = self.vsets.borrow()[vs.0 as usize].1.clone();
        candidates
            .iter()
            .copied()
            .filter(|s| self.matches(*s, &kind) != inverse)
            .collect()
    }

    async fn get_candidates(&self, name: NameId) -> Option<Candidates<SolvableId>> {
        let n = self.names.borrow()[name.to_index()].clone();
        let c = self.by_name.get(&n)?;
        Some(Candidates {
            candidates: c.clone(),
            hint_dependencies_available: HintDependenciesAvailable::All,
            ..Candidates::default()
        })
    }

    async fn sort_candidates(&self, _solver: &SolverCache<Self>, solvables: &mut [SolvableId]) {
        // Newest first; on a tie prefer the package's own arch over noarch, then path order.
        solvables.sort_by(|a, b| {
            let (pa, pb) = (self.pkg(*a), self.pkg(*b));
            pb.cmp_evr(pa)
                .then_with(|| (pa.arch == "noarch").cmp(&(pb.arch == "noarch")))
                .then_with(|| pa.path.cmp(&pb.path))
        });
    }

    async fn get_dependencies(&self, s: SolvableId) -> Dependencies {
        if let Some(d) = self.deps_cache.borrow().get(&s) {
            return Dependencies::Known(d.clone());
        }
        let d = self.compute_deps(s);
        self.deps_cache.borrow_mut().insert(s, d.clone());
        Dependencies::Known(d)
    }
}

/// A rich (boolean) dependency, as far as we translate it.
#[derive(Debug, Clone, PartialEq)]
enum Rich {
    Atom(Dep),
    And(Vec<Rich>),
    Or(Vec<Rich>),
    /// `(A if B)`: A is required when B is installed. `unless` and `else` are approximated
    /// (see parse_rich).
    If(Box<Rich>, Box<Rich>),
}

impl Rich {
    fn atoms(&self, out: &mut Vec<Dep>) {
        match self {
            Rich::Atom(d) => out.push(d.clone()),
            Rich::And(v) | Rich::Or(v) => v.iter().for_each(|x| x.atoms(out)),
            Rich::If(a, _) => a.atoms(out),
        }
    }
}

/// Parses rpm's boolean dependency syntax: `(a >= 1 or (b and c))`, `(a if b)`, `(a with b)`.
/// `with` is treated as `and`; `without`/`unless` keep only their left side; `else` branches
/// are dropped (never required): approximations that can only under-require, noted here.
fn parse_rich(s: &str) -> Result<Rich> {
    let toks: Vec<String> = s
        .replace('(', " ( ")
        .replace(')', " ) ")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut pos = 0;
    let r = parse_group(&toks, &mut pos)?;
    if pos != toks.len() {
        bail!("trailing text after the closing parenthesis");
    }
    Ok(r)
}

fn parse_group(t: &[String], pos: &mut usize) -> Result<Rich> {
    if t.get(*pos).map(String::as_str) != Some("(") {
        bail!("expected '('");
    }
    *pos += 1;
    let mut operands = vec![parse_operand(t, pos)?];
    let mut op: Option<String> = None;
    let mut cond: Option<Rich> = None;
    loop {
        let Some(tok) = t.get(*pos) else {
            bail!("missing ')'")
        };
        *pos += 1;
        match tok.as_str() {
            ")" => break,
            "and" | "or" | "with" => {
                op = Some(tok.clone());
                operands.push(parse_operand(t, pos)?);
            }
            "if" => cond = Some(parse_operand(t, pos)?),
            "unless" | "without" => {
                parse_operand(t, pos)?;
            }
            "else" => {
                parse_operand(t, pos)?;
            }
            other => bail!("unexpected {other:?}"),
        }
    }
    let body = if operands.len() == 1 {
        operands.pop().unwrap()
    } else if op.as_deref() == Some("or") {
        Rich::Or(operands)
    } else {
        Rich::And(operands)
    };
    Ok(match cond {
        Some(c) => Rich::If(Box::new(body), Box::new(c)),
        None => body,
    })
}

fn parse_operand(t: &[String], pos: &mut usize) -> Result<Rich> {
    match t.get(*pos).map(String::as_str) {
        Some("(") => parse_group(t, pos),
        Some(name) => {
            let name = name.to_string();
            *pos += 1;
            if let Some(op) = t.get(*pos).and_then(|o| Op::from_symbol(o)) {
                let evr = t
                    .get(*pos + 1)
                    .ok_or_else(|| anyhow::anyhow!("missing version after operator"))?;
                *pos += 2;
                Ok(Rich::Atom(Dep {
                    name,
                    constraint: Some((op, EvrS::parse(evr))),
                }))
            } else {
                Ok(Rich::Atom(Dep::new(&name)))
            }
        }
        None => bail!("unexpected end"),
    }
}

/// What the treefile asks for.
pub struct Request<'r> {
    /// Package names (or capabilities) to install.
    pub packages: &'r [String],
    /// (repo id, package) pairs from `repo-packages`.
    pub repo_packages: &'r [(String, String)],
}

/// Resolves the request over `pkgs`; returns the chosen packages sorted by name.
pub fn resolve(pkgs: &[PkgInfo], req: &Request<'_>) -> Result<Vec<PkgInfo>> {
    let pool = Pool::new(pkgs);
    let mut reqs: Vec<ConditionalRequirement> = Vec::new();
    let mut missing = Vec::new();
    for p in req.packages {
        if pool.by_name.contains_key(p) {
            reqs.push(pool.vset(pool.name(p), VsKind::Any(None)).into());
        } else {
            let dep = parse_request(p);
            if pool.provider_names(&dep).is_empty() {
                missing.push(p.clone());
            }
            reqs.push(pool.requirement(&dep).into());
        }
    }
    for (repo, p) in req.repo_packages {
        if !pool
            .by_name
            .get(p)
            .is_some_and(|v| v.iter().any(|s| &pool.pkg(*s).repo == repo))
        {
            bail!(
                "repo-packages: package {p:?} is not in repo [{repo}]; check the repo id and the package name"
            );
        }
        reqs.push(
            pool.vset(pool.name(p), VsKind::Any(Some(repo.clone())))
                .into(),
        );
    }
    if !missing.is_empty() {
        bail!(
            "no package provides {} (requested in the treefile's packages); check the name and that its repo is listed in `repos`",
            missing.join(", ")
        );
    }
    let mut solver = Solver::new(pool);
    match solver.solve(Problem::new().requirements(reqs)) {
        Ok(sol) => {
            let pool = solver.provider();
            let mut out: Vec<PkgInfo> = sol.into_iter().map(|s| pool.pkg(s).clone()).collect();
            out.sort_by(|a, b| a.name.cmp(&b.name).then(a.arch.cmp(&b.arch)));
            Ok(out)
        }
        Err(UnsolvableOrCancelled::Unsolvable(conflict)) => {
            let mut msg = String::new();
            let _ = write!(msg, "{}", conflict.display_user_friendly(&solver));
            bail!("dependency resolution failed:\n{}", msg.trim_end());
        }
        Err(UnsolvableOrCancelled::Cancelled(_)) => bail!("dependency resolution was cancelled"),
    }
}

/// `name`, or `name >= 1.0` as a treefile entry.
fn parse_request(s: &str) -> Dep {
    let parts: Vec<&str> = s.split_whitespace().collect();
    match parts.as_slice() {
        [n, op, evr] if Op::from_symbol(op).is_some() => Dep {
            name: n.to_string(),
            constraint: Some((Op::from_symbol(op).unwrap(), EvrS::parse(evr))),
        },
        _ => Dep::new(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rich_parsing() {
        let r = parse_rich("(a >= 1.0 or (b and c))").unwrap();
        let mut atoms = Vec::new();
        r.atoms(&mut atoms);
        assert_eq!(atoms.len(), 3);
        assert!(matches!(r, Rich::Or(_)));
        assert!(matches!(parse_rich("(x if y)").unwrap(), Rich::If(_, _)));
        assert!(parse_rich("(a or").is_err());
    }
}
