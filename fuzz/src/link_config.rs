//! Target `link_config`: cluster link properties (`--config-file` text and inline
//! `--config`), their validation, topic/group filters (JSON) and the ISO-8601
//! timestamps of `mirror.start.offset.spec`. Input: fields separated by 0x00 bytes:
//! properties text, inline config, start offset spec, filters JSON, a name to match;
//! the last 12 bytes, when there, also give a structured timestamp.
//!
//! Properties: nothing panics; properties written back (every special character
//! escaped) parse to the same map; a timestamp spec built from valid fields parses to the same instant
//! as an independent day count.

use std::collections::BTreeMap;

use mirrorgate::replicator::link_config::{
    filters_match, parse_inline, parse_properties, LinkConfig, StartOffset,
};

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\0');
    let properties = fields.next().unwrap_or_default();
    let inline = fields.next().unwrap_or_default();
    let spec = fields.next().unwrap_or_default();
    let filters = fields.next().unwrap_or_default();
    let name = fields.next().unwrap_or_default();

    if let Ok(map) = parse_properties(properties) {
        round_trip(&map);
        validate(map);
    }
    if let Ok(map) = parse_inline(inline) {
        validate(map);
    }
    let mut raw = BTreeMap::new();
    raw.insert("bootstrap.servers".to_string(), "h:1".to_string());
    raw.insert("mirror.start.offset.spec".to_string(), spec.to_string());
    raw.insert(
        "consumer.offset.group.filters".to_string(),
        filters.replace("topicFilters", "groupFilters"),
    );
    raw.insert(
        "auto.create.mirror.topics.filters".to_string(),
        filters.replace("groupFilters", "topicFilters"),
    );
    if let Ok(config) = LinkConfig::from_properties(raw) {
        filters_match(&config.group_filters, name);
        filters_match(&config.topic_filters, name);
    }
    if let Some(tail) = data.last_chunk::<12>() {
        timestamp(tail);
    }
}

fn validate(map: BTreeMap<String, String>) {
    if let Ok(config) = LinkConfig::from_properties(map) {
        let _ = config.redacted();
    }
}

/// Writing the map back as properties (every special character escaped) gives the
/// same map.
fn round_trip(map: &BTreeMap<String, String>) {
    let text: String = map
        .iter()
        .map(|(k, v)| format!("{}={}\n", escape(k), escape(v)))
        .collect();
    assert_eq!(&parse_properties(&text).unwrap(), map, "{text:?}");
}

/// A key or value as Java properties text: separators, comment marks, whitespace and
/// control characters escaped; everything else as UTF-8.
fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\\' | '=' | ':' | '#' | '!' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A well-formed timestamp parses to the same milliseconds as a naive day count.
fn timestamp(raw: &[u8; 12]) {
    let year = 1970 + i64::from(u16::from_be_bytes([raw[0], raw[1]]) % 8030);
    let month = i64::from(raw[2] % 12) + 1;
    let day = i64::from(raw[3] % 28) + 1;
    let (hour, minute, second) = (
        i64::from(raw[4] % 24),
        i64::from(raw[5] % 60),
        i64::from(raw[6] % 60),
    );
    let millis = i64::from(u16::from_be_bytes([raw[7], raw[8]]) % 1000);
    let zone_minutes = i64::from(raw[9] % 24) * 60 - 11 * 60 + i64::from(raw[10] % 2) * 30;
    let zone = match raw[11] % 3 {
        0 => "Z".to_string(),
        _ => format!(
            "{}{:02}:{:02}",
            if zone_minutes < 0 { '-' } else { '+' },
            zone_minutes.abs() / 60,
            zone_minutes.abs() % 60
        ),
    };
    let offset_minutes = if raw[11] % 3 == 0 { 0 } else { zone_minutes };
    let spec = format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}{zone}"
    );
    let mut raw_config = BTreeMap::new();
    raw_config.insert("bootstrap.servers".to_string(), "h:1".to_string());
    raw_config.insert("mirror.start.offset.spec".to_string(), spec.clone());
    let config = LinkConfig::from_properties(raw_config).expect(&spec);
    let days = days_since_epoch(year, month, day);
    let expect = ((days * 86_400 + hour * 3600 + minute * 60 + second) - offset_minutes * 60)
        * 1000
        + millis;
    assert_eq!(
        config.start_offset,
        StartOffset::Timestamp(expect),
        "{spec}"
    );
}

/// Days from 1970-01-01, counted year by year and month by month.
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days: i64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    const MONTH_DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    for m in 1..month {
        days += MONTH_DAYS[(m - 1) as usize] + i64::from(m == 2 && leap(year));
    }
    days + day - 1
}
