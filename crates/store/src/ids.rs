use rand::Rng;

/// Klaviyo-style 26-character ULID, used for profiles and events: sortable by
/// creation time, which keeps cursor pagination cheap.
pub fn new_ulid() -> String {
    ulid::Ulid::new().to_string()
}

/// Klaviyo-style 6-character id, used for lists, metrics and flows.
pub fn new_short_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..6)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
