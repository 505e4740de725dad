//! Server-generated gids: a random UUID v4 written in base 57 ("shortuuid"), as dtm makes them.

const ALPHABET: &[u8; 57] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A new random gid, usually 22 characters, least-significant digit first (dtm's format).
pub fn new_gid() -> String {
    encode(uuid::Uuid::new_v4().as_u128())
}

fn encode(mut n: u128) -> String {
    let mut out = String::with_capacity(22);
    while n > 0 {
        out.push(ALPHABET[(n % 57) as usize] as char);
        n /= 57;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gids_use_the_base57_alphabet_and_length() {
        for _ in 0..1000 {
            let gid = new_gid();
            assert!((20..=22).contains(&gid.len()), "{gid}");
            assert!(gid.bytes().all(|b| ALPHABET.contains(&b)), "{gid}");
        }
    }

    #[test]
    fn encoding_is_little_endian_base57() {
        assert_eq!(encode(57 * 2 + 1), "34");
    }
}
