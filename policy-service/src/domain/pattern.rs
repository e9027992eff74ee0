//! Patterns: `*` alone matches everything, a trailing `*` matches a prefix,
//! anything else matches exactly (case-sensitive).

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    Any,
    Prefix(String),
    Exact(String),
}

impl Pattern {
    /// Compiles a pattern; a `*` anywhere but at the end is an error.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("an empty pattern matches nothing; remove it or write `*`".into());
        }
        if text == "*" {
            return Ok(Self::Any);
        }
        match text.find('*') {
            None => Ok(Self::Exact(text.to_owned())),
            Some(at) if at == text.len() - 1 => Ok(Self::Prefix(text[..at].to_owned())),
            Some(_) => Err(format!("{text:?}: only a trailing * is supported")),
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Prefix(prefix) => value.starts_with(prefix.as_str()),
            Self::Exact(exact) => value == exact,
        }
    }

    /// Whether every value this pattern matches is also matched by `other`.
    pub fn is_covered_by(&self, other: &Self) -> bool {
        match (other, self) {
            (Self::Any, _) => true,
            (_, Self::Any) => false,
            (Self::Prefix(p), Self::Prefix(q)) => q.starts_with(p.as_str()),
            (Self::Prefix(p), Self::Exact(e)) => e.starts_with(p.as_str()),
            (Self::Exact(_), Self::Prefix(_)) => false,
            (Self::Exact(a), Self::Exact(b)) => a == b,
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Prefix(p) => write!(f, "{p}*"),
            Self::Exact(e) => f.write_str(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_all_prefix_or_exact() {
        let any = Pattern::parse("*").expect("valid");
        let prefix = Pattern::parse("io.fs.*").expect("valid");
        let exact = Pattern::parse("net.http.post").expect("valid");
        assert!(any.matches("anything"));
        assert!(
            prefix.matches("io.fs.read_file")
                && !prefix.matches("io.fsx")
                && !prefix.matches("IO.fs.read")
        );
        assert!(exact.matches("net.http.post") && !exact.matches("net.http.post2"));
        assert!(Pattern::parse("io.*.read").is_err());
        assert!(Pattern::parse("").is_err());
    }

    #[test]
    fn coverage_between_patterns() {
        let p = |t: &str| Pattern::parse(t).expect("valid");
        assert!(p("io.fs.read").is_covered_by(&p("io.*")));
        assert!(p("io.fs.*").is_covered_by(&p("io.*")));
        assert!(!p("io.*").is_covered_by(&p("io.fs.*")));
        assert!(!p("*").is_covered_by(&p("io.*")));
        assert!(p("a.b").is_covered_by(&p("a.b")));
    }
}
