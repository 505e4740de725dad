//! Server-generated gids: a random UUID v4 written in base 57 ("shortuuid"), as dtm makes them.

const ALPHABET: &[u8; 57] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A new random gid, usually 22 characters, least-significant digit first (dtm's format).
///
/// The random bytes come from the thread's generator, seeded once from the OS, not from one
/// `getrandom` system call per gid: every submitted transaction takes one for its owner token.
pub fn new_gid() -> String {
    encode(
        uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .as_u128(),
    )
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
    fn gids_are_random_uuids_v4() {
        let decode = |gid: &str| {
            gid.bytes().rev().fold(0u128, |n, b| {
                let digit = ALPHABET.iter().position(|&a| a == b).unwrap_or(0);
                n * 57 + digit as u128
            })
        };
        let first = new_gid();
        assert_ne!(first, new_gid());
        for _ in 0..100 {
            let uuid = uuid::Uuid::from_u128(decode(&new_gid()));
            assert_eq!(uuid.get_version_num(), 4);
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        }
    }

    #[test]
    fn encoding_is_little_endian_base57() {
        assert_eq!(encode(57 * 2 + 1), "34");
    }
}
