//! RFC 3339 UTC timestamps with nanoseconds, from a Unix time, without libc.

/// Writes `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (30 bytes) into `out`.
pub fn rfc3339(secs: i64, nanos: u32, out: &mut [u8; 30]) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, (rem / 60) % 60, rem % 60);
    put(out, 0, y.clamp(0, 9999) as u64, 4);
    out[4] = b'-';
    put(out, 5, m as u64, 2);
    out[7] = b'-';
    put(out, 8, d as u64, 2);
    out[10] = b'T';
    put(out, 11, hh as u64, 2);
    out[13] = b':';
    put(out, 14, mm as u64, 2);
    out[16] = b':';
    put(out, 17, ss as u64, 2);
    out[19] = b'.';
    put(out, 20, nanos.min(999_999_999) as u64, 9);
    out[29] = b'Z';
}

fn put(out: &mut [u8; 30], at: usize, mut v: u64, width: usize) {
    for k in (0..width).rev() {
        if let Some(slot) = out.get_mut(at + k) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: i64, ns: u32) -> [u8; 30] {
        let mut o = [0u8; 30];
        rfc3339(secs, ns, &mut o);
        o
    }

    #[test]
    fn known_instants() {
        assert_eq!(&s(0, 0), b"1970-01-01T00:00:00.000000000Z");
        assert_eq!(&s(951_782_400, 5), b"2000-02-29T00:00:00.000000005Z");
        assert_eq!(&s(1_795_000_000, 123_456_789), b"2026-11-18T11:06:40.123456789Z");
    }
}
