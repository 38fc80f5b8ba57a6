//! Splits template source into tokens exactly like Django's `Lexer`:
//! a tag never spans a newline, `{# #}` comments vanish, and `verbatim`
//! blocks are passed through as text until their matching end tag.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Text,
    Var,
    Block,
    Comment,
}

/// One token: `content` is the stripped inside of a tag, or the raw text.
#[derive(Debug, Clone)]
pub struct Token<'s> {
    pub kind: TokenKind,
    pub content: &'s str,
    /// Byte offset of the token in the source.
    pub offset: usize,
}

/// Tokenize `src`.
pub fn tokenize(src: &str) -> Vec<Token<'_>> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut verbatim: Option<String> = None;
    let mut text_start = 0;
    let mut i = 0;
    // Next known position of "%}", "}}", "#}" and "\n" (usize::MAX: none).
    let mut cache: [Option<usize>; 4] = [None; 4];
    while i + 1 < bytes.len() {
        if bytes[i] != b'{' {
            i += 1;
            continue;
        }
        let k = match bytes[i + 1] {
            b'%' => 0,
            b'{' => 1,
            b'#' => 2,
            _ => {
                i += 1;
                continue;
            }
        };
        // Non-greedy `.*?`: the first closer after the opener, with no
        // newline before it. Cached "next occurrence" positions keep this
        // linear even for lines full of unclosed openers.
        let from = i + 2;
        let close = next_at(&mut cache[k], from, |p| find(bytes, CLOSERS[k], p));
        let nl = next_at(&mut cache[3], from, |p| find(bytes, b"\n", p));
        let end = (close < nl && close != usize::MAX).then(|| close + 2);
        let Some(end) = end else {
            i += 1;
            continue;
        };
        if text_start < i {
            tokens.push(Token {
                kind: TokenKind::Text,
                content: &src[text_start..i],
                offset: text_start,
            });
        }
        let whole = &src[i..end];
        let inner = src[i + 2..end - 2].trim_matches(is_py_space);
        let kind = match CLOSERS[k][0] {
            b'%' => {
                if let Some(endtag) = &verbatim {
                    if inner == endtag {
                        verbatim = None;
                        TokenKind::Block
                    } else {
                        TokenKind::Text
                    }
                } else {
                    if inner == "verbatim" || inner.starts_with("verbatim ") {
                        verbatim = Some(format!("end{inner}"));
                    }
                    TokenKind::Block
                }
            }
            _ if verbatim.is_some() => TokenKind::Text,
            b'}' => TokenKind::Var,
            _ => TokenKind::Comment,
        };
        tokens.push(Token {
            kind,
            content: if kind == TokenKind::Text {
                whole
            } else {
                inner
            },
            offset: i,
        });
        i = end;
        text_start = end;
    }
    if text_start < src.len() {
        tokens.push(Token {
            kind: TokenKind::Text,
            content: &src[text_start..],
            offset: text_start,
        });
    }
    tokens
}

const CLOSERS: [&[u8]; 3] = [b"%}", b"}}", b"#}"];

fn find(hay: &[u8], pat: &[u8], from: usize) -> usize {
    hay.get(from..)
        .and_then(|h| h.windows(pat.len()).position(|w| w == pat))
        .map_or(usize::MAX, |p| p + from)
}

/// Reuse a cached next-occurrence position while it is still ahead of `from`.
fn next_at(slot: &mut Option<usize>, from: usize, search: impl Fn(usize) -> usize) -> usize {
    match *slot {
        Some(p) if p >= from => p,
        _ => {
            let p = search(from);
            *slot = Some(p);
            p
        }
    }
}

/// Python's `str.strip()` whitespace.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_do_not_span_lines() {
        let t = tokenize("a{{ x\n}}b{{ y }}");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].content, "a{{ x\n}}b");
        assert_eq!(t[1].content, "y");
    }

    #[test]
    fn verbatim_passes_tags() {
        let t = tokenize("{% verbatim %}{{ x }}{% endverbatim %}");
        assert_eq!(t[1].kind, TokenKind::Text);
        assert_eq!(t[2].kind, TokenKind::Block);
    }
}
