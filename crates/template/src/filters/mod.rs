//! Filter registry: names resolve to an enum at compile time so rendering
//! dispatches with a `match`, never a string lookup.

pub mod django;
pub mod klaviyo;

use chrono::NaiveDateTime;

use crate::error::RenderError;
use crate::value::Safe;
use crate::value::Value;

/// How many arguments a filter accepts (checked at compile time, like
/// Django's `args_check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    None,
    Optional,
    Required,
}

/// What filters may consult besides their input.
pub struct Env<'e> {
    pub autoescape: bool,
    pub now: Option<NaiveDateTime>,
    /// Upper bound on the size of any single value a filter builds.
    pub max_size: usize,
    pub string_if_invalid: &'e str,
}

impl Env<'_> {
    /// Fail before allocating something larger than the output limit.
    pub fn check_size(&self, n: usize) -> Result<(), RenderError> {
        if n > self.max_size {
            Err(RenderError::OutputTooLarge(self.max_size))
        } else {
            Ok(())
        }
    }
}

macro_rules! filters {
    ($( $name:literal => $variant:ident, $arity:ident, $safe:literal; )*) => {
        /// Every filter the engine knows (Django built-ins, Klaviyo's, ours).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Filter { $($variant,)* }

        /// Resolve a filter name (aliases map to the same variant).
        pub fn lookup(name: &str) -> Option<(Filter, Arity)> {
            match name {
                $( $name => Some((Filter::$variant, Arity::$arity)), )*
                _ => alias(name),
            }
        }

        impl Filter {
            /// Django's `is_safe`: a safe input keeps its result safe.
            pub fn is_safe(self) -> bool {
                match self { $( Filter::$variant => $safe, )* }
            }
        }
    };
}

filters! {
    // Django built-ins.
    "addslashes" => Addslashes, None, true;
    "capfirst" => Capfirst, None, true;
    "escapejs" => Escapejs, None, false;
    "json_script" => JsonScript, Optional, true;
    "floatformat" => Floatformat, Optional, true;
    "iriencode" => Iriencode, None, true;
    "linenumbers" => Linenumbers, None, true;
    "lower" => Lower, None, true;
    "make_list" => MakeList, None, false;
    "slugify" => Slugify, None, true;
    "stringformat" => Stringformat, Required, true;
    "title" => Title, None, true;
    "truncatechars" => Truncatechars, Required, true;
    "truncatewords" => Truncatewords, Required, true;
    "upper" => Upper, None, false;
    "urlencode" => Urlencode, Optional, false;
    "wordcount" => Wordcount, None, false;
    "wordwrap" => Wordwrap, Required, true;
    "ljust" => Ljust, Required, true;
    "rjust" => Rjust, Required, true;
    "center" => Center, Required, true;
    "cut" => Cut, Required, false;
    "escape" => Escape, None, true;
    "escapeseq" => Escapeseq, None, true;
    "force_escape" => ForceEscape, None, true;
    "linebreaks" => Linebreaks, None, true;
    "linebreaksbr" => Linebreaksbr, None, true;
    "safe" => Safe, None, true;
    "safeseq" => Safeseq, None, true;
    "striptags" => Striptags, None, true;
    "dictsort" => Dictsort, Required, false;
    "dictsortreversed" => Dictsortreversed, Required, false;
    "first" => First, None, false;
    "join" => Join, Required, true;
    "last" => Last, None, true;
    "length" => Length, None, false;
    "slice" => Slice, Required, true;
    "unordered_list" => UnorderedList, None, true;
    "add" => Add, Required, false;
    "get_digit" => GetDigit, Required, false;
    "date" => Date, Optional, false;
    "time" => Time, Optional, false;
    "timesince" => Timesince, Optional, false;
    "timeuntil" => Timeuntil, Optional, false;
    "default" => Default, Required, false;
    "default_if_none" => DefaultIfNone, Required, false;
    "divisibleby" => Divisibleby, Required, false;
    "yesno" => Yesno, Optional, false;
    "filesizeformat" => Filesizeformat, None, true;
    "pluralize" => Pluralize, Optional, false;
    "phone2numeric" => Phone2numeric, None, true;
    "pprint" => Pprint, None, true;
    // Klaviyo's filters.
    "lookup" => Lookup, Required, false;
    "abs" => Abs, None, false;
    "ceil" => Ceil, None, false;
    "floor" => Floor, None, false;
    "round" => Round, Optional, false;
    "round_up" => RoundUp, Optional, false;
    "round_down" => RoundDown, Optional, false;
    "at_least" => AtLeast, Required, false;
    "at_most" => AtMost, Required, false;
    "multiply" => Multiply, Required, false;
    "divide" => Divide, Required, false;
    "floatadd" => Floatadd, Required, false;
    "floatsub" => Floatsub, Required, false;
    "modulo" => Modulo, Required, false;
    "percentize" => Percentize, Optional, false;
    "sum_list" => SumList, None, false;
    "gt" => Gt, Required, false;
    "gte" => Gte, Required, false;
    "lt" => Lt, Required, false;
    "lte" => Lte, Required, false;
    "append" => Append, Required, false;
    "prepend" => Prepend, Required, false;
    "concat" => Concat, Required, false;
    "trim_slash" => TrimSlash, None, false;
    "strip" => Strip, Optional, false;
    "lstrip" => Lstrip, Optional, false;
    "rstrip" => Rstrip, Optional, false;
    "strip_newlines" => StripNewlines, None, false;
    "find_replace" => FindReplace, Required, false;
    "replace_first" => ReplaceFirst, Required, false;
    "replace_last" => ReplaceLast, Required, false;
    "split" => Split, Optional, false;
    "resplit" => Resplit, Optional, false;
    "remove" => Remove, Required, false;
    "remove_first" => RemoveFirst, Required, false;
    "remove_last" => RemoveLast, Required, false;
    "truncate" => Truncate, Optional, false;
    "escape_once" => EscapeOnce, None, true;
    "urldecode" => Urldecode, None, false;
    "urlencodeplus" => Urlencodeplus, None, false;
    "httpize" => Httpize, None, false;
    "httpsize" => Httpsize, None, false;
    "compact" => Compact, None, false;
    "uniq" => Uniq, None, false;
    "map" => Map, Required, false;
    "sort" => Sort, Optional, false;
    "sort_natural" => SortNatural, Optional, false;
    "reverse" => Reverse, None, false;
    "list_to_string" => ListToString, Optional, false;
    "list_where" => ListWhere, Required, false;
    "dictfilter" => Dictfilter, Required, false;
    "size" => Size, None, false;
    "md5_hash" => Md5Hash, None, false;
    "sha_1" => Sha1, None, false;
    "sha_256" => Sha256, None, false;
    "base64_encode" => Base64Encode, None, false;
    "base64_decode" => Base64Decode, None, false;
    "base64_url_safe_encode" => Base64UrlSafeEncode, None, false;
    "base64_url_safe_decode" => Base64UrlSafeDecode, None, false;
    "format_date_string" => FormatDateString, Optional, false;
    "datetime_from_string" => DatetimeFromString, Optional, false;
    "days_later" => DaysLater, Optional, false;
    "weeks_since" => WeeksSince, None, false;
    "missing_image" => MissingImage, Optional, false;
    // Outflow's extension: the value as valid JSON.
    "json" => Json, None, true;
}

/// Klaviyo's alternative names.
fn alias(name: &str) -> Option<(Filter, Arity)> {
    let target = match name {
        "plus" => "floatadd",
        "minus" => "floatsub",
        "remainder" => "modulo",
        "downcase" => "lower",
        "upcase" => "upper",
        "capitalize" => "capfirst",
        "strip_html" => "striptags",
        "newline_to_br" => "linebreaksbr",
        "count" => "size",
        "missing_product_image" => "missing_image",
        _ => return None,
    };
    lookup(target)
}

/// Apply one filter.
#[inline]
pub fn apply<'a>(
    f: Filter,
    v: Value<'a>,
    arg: Option<Value<'a>>,
    env: &Env<'_>,
) -> Result<Value<'a>, RenderError> {
    let keep_safe = v.is_safe() && f.is_safe();
    let out = django::apply(f, v, arg, env)?;
    if keep_safe && !out.is_safe() {
        return Ok(match out {
            Value::Str(s, _) => Value::Str(s, Safe::Yes),
            other => Value::safe_owned(other.to_py_str().into_owned()),
        });
    }
    Ok(out)
}
