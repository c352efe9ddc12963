//! Helpers that make error messages teach: quoting user text safely and
//! suggesting the name that was probably meant.

/// How many characters of user text an error message repeats.
const QUOTE_MAX_CHARS: usize = 40;

/// Words longer than this get no suggestion (it would only be noise).
const SUGGEST_MAX_CHARS: usize = 64;

/// `text` in double quotes with control characters escaped, cut to a
/// readable length, so that it can never break the one-line message.
pub(crate) fn quote(text: &str) -> String {
    if text.chars().count() <= QUOTE_MAX_CHARS {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(QUOTE_MAX_CHARS).collect();
    format!("{head:?}...")
}

/// The candidate closest to `word`: equal ignoring case, or at most two
/// edits away (and fewer edits than `word` has characters).
pub(crate) fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = word.chars().count();
    if len == 0 || len > SUGGEST_MAX_CHARS {
        return None;
    }
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (distance(&lower, c), c))
        .filter(|&(d, _)| d <= 2 && d < len)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance between `a` and `b`, in characters (one row of the
/// classic table at a time).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let (mut diagonal, mut left) = (i, i + 1);
        let mut next = Vec::with_capacity(row.len());
        next.push(left);
        for (&cb, &above) in b.iter().zip(row.iter().skip(1)) {
            let cost = (diagonal + usize::from(ca != cb)).min(above + 1).min(left + 1);
            next.push(cost);
            (diagonal, left) = (above, cost);
        }
        row = next;
    }
    row.last().copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_names_only() {
        let names = ["system", "exec", "network"];
        assert_eq!(closest("sytem", names), Some("system"));
        assert_eq!(closest("EXEC", names), Some("exec"));
        assert_eq!(closest("netwrok", names), Some("network"));
        assert_eq!(closest("zz", names), None);
        assert_eq!(closest("", names), None);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("abc", ""), 3);
    }

    #[test]
    fn quotes_escape_and_shorten() {
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        assert_eq!(quote(&"x".repeat(100)), format!("\"{}\"...", "x".repeat(40)));
    }
}
