//! Reading and writing the keyring file (the only IO in this crate).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::envelope::KEY_LEN;
use crate::keyring::{KeyEntry, KeyId, Keyring};
use crate::{CryptoError, random_bytes};

/// Value of the `format` field.
const FORMAT: &str = "credvault-keyring/1";
/// A keyring file is tiny; refuse anything absurd before reading it.
const MAX_FILE_LEN: u64 = 1 << 20;
/// Upper bound on key id length.
const MAX_ID_LEN: usize = 64;

/// When a key was created: RFC 3339 text (what we write) or unix seconds
/// (accepted on load, preserved on save).
#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum CreatedAt {
    Unix(u64),
    Text(String),
}

impl CreatedAt {
    pub(crate) fn now() -> CreatedAt {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        CreatedAt::Text(rfc3339_utc(secs))
    }

    fn is_valid(&self) -> bool {
        match self {
            CreatedAt::Unix(_) => true,
            CreatedAt::Text(s) => {
                (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())) || looks_like_rfc3339(s)
            }
        }
    }
}

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days algorithm;
/// avoids a date-time dependency for one field).
pub(crate) fn rfc3339_utc(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// A light structural check (`YYYY-MM-DDTHH:MM:SS...`); the timestamp is
/// informational, so we only guard against garbage.
fn looks_like_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return false;
    }
    let digit_at = |i: &[usize]| i.iter().all(|&i| b.get(i).is_some_and(u8::is_ascii_digit));
    digit_at(&[0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
        && b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && matches!(b.get(10), Some(b'T' | b't'))
        && b.get(13) == Some(&b':')
        && b.get(16) == Some(&b':')
}

/// A string holding base64 key material; wiped when dropped.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(transparent)]
struct SecretString(String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    format: String,
    primary: String,
    keys: Vec<KeyIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyIn {
    id: String,
    created_at: CreatedAt,
    key: SecretString,
}

#[derive(Serialize)]
struct FileOut<'a> {
    format: &'static str,
    primary: &'a str,
    keys: Vec<KeyOut<'a>>,
}

#[derive(Serialize)]
struct KeyOut<'a> {
    id: &'a str,
    created_at: &'a CreatedAt,
    key: SecretString,
}

fn io_err(path: &Path, source: io::Error) -> CryptoError {
    CryptoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn malformed(path: &Path, reason: impl Into<String>) -> CryptoError {
    CryptoError::MalformedKeyFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

pub(crate) fn load(path: &Path) -> Result<Keyring, CryptoError> {
    // Check permissions on the opened handle, not the path, so the file we
    // check is the file we read.
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let meta = file.metadata().map_err(|e| io_err(path, e))?;
    if !meta.is_file() {
        return Err(malformed(path, "not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CryptoError::InsecureKeyFile {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(malformed(path, "file too large"));
    }
    let capacity = usize::try_from(meta.len()).unwrap_or(0).saturating_add(1);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(path, e))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(malformed(path, "file too large"));
    }
    parse(path, &bytes)
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Keyring, CryptoError> {
    // serde_json error messages can quote input, which may be key material:
    // report only the category and position.
    let doc: FileIn = serde_json::from_slice(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "unexpected json structure",
            serde_json::error::Category::Eof => "truncated json",
            serde_json::error::Category::Syntax | serde_json::error::Category::Io => "invalid json",
        };
        malformed(path, format!("{what} at line {} column {}", e.line(), e.column()))
    })?;
    if doc.format != FORMAT {
        return Err(malformed(path, format!("unsupported format (expected {FORMAT})")));
    }
    let mut seen = HashSet::new();
    let mut keys = Vec::with_capacity(doc.keys.len());
    let mut max_seq = 0u64;
    for k in &doc.keys {
        if !valid_id(&k.id) {
            return Err(malformed(path, "invalid key id"));
        }
        if !seen.insert(k.id.as_str()) {
            return Err(malformed(path, format!("duplicate key id {}", k.id)));
        }
        if !k.created_at.is_valid() {
            return Err(malformed(path, format!("key {} has an invalid created_at", k.id)));
        }
        // Decode into a fixed zeroizing buffer large enough to detect
        // over-long keys without ever reallocating.
        let mut buf = Zeroizing::new([0u8; 48]);
        let n = STANDARD
            .decode_slice(k.key.0.as_bytes(), &mut buf[..])
            .map_err(|_| malformed(path, format!("key {} is not valid base64 of 32 bytes", k.id)))?;
        if n != KEY_LEN {
            return Err(malformed(path, format!("key {} is not 32 bytes", k.id)));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&buf[..KEY_LEN]);
        let id = KeyId::new(k.id.clone());
        if let Some(seq) = id.sequence() {
            max_seq = max_seq.max(seq);
        }
        keys.push(KeyEntry {
            id,
            created_at: k.created_at.clone(),
            key,
        });
    }
    if !seen.contains(doc.primary.as_str()) {
        return Err(malformed(path, "primary key is not in keys"));
    }
    Ok(Keyring {
        keys,
        primary: KeyId::new(doc.primary.clone()),
        max_seq,
    })
}

/// Serializes a keyring as the key file's JSON, in a zeroizing buffer.
pub(crate) fn to_bytes(keyring: &Keyring) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let doc = FileOut {
        format: FORMAT,
        primary: keyring.primary.as_str(),
        keys: keyring
            .keys
            .iter()
            .map(|k| KeyOut {
                id: k.id.as_str(),
                created_at: &k.created_at,
                key: SecretString(STANDARD.encode(&k.key[..])),
            })
            .collect(),
    };
    // Generous pre-sizing so serialisation does not reallocate and leave
    // copies of key material in freed memory.
    let mut bytes = Zeroizing::new(Vec::with_capacity(1024 + 256 * keyring.keys.len()));
    serde_json::to_writer_pretty(&mut *bytes, &doc)
        .map_err(|e| CryptoError::Malformed(format!("cannot serialize the keyring: {e}")))?;
    drop(doc);
    bytes.push(b'\n');
    Ok(bytes)
}

/// Parses key file JSON held in memory (e.g. after a KMS decrypt).
pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Keyring, CryptoError> {
    parse(Path::new("<memory>"), bytes)
}

pub(crate) fn save(keyring: &Keyring, path: &Path) -> Result<(), CryptoError> {
    let bytes = to_bytes(keyring)?;
    write_private(path, &bytes)
}

/// Atomically writes a private file: temp file with mode 0600, fsync, rename, fsync dir.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CryptoError> {
    let file_name = path.file_name().ok_or_else(|| {
        io_err(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "key file path has no file name"),
        )
    })?;
    let dir: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let suffix: String = random_bytes::<8>().iter().map(|b| format!("{b:02x}")).collect();
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{suffix}"));
    let tmp = dir.join(tmp_name);

    let result = write_synced(&tmp, bytes).and_then(|()| fs::rename(&tmp, path).map_err(|e| io_err(path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| io_err(&dir, e))
}

fn write_synced(tmp: &Path, bytes: &[u8]) -> Result<(), CryptoError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| io_err(tmp, e))?;
    // The mode passed to open is filtered by the umask, which can only remove
    // bits; set it explicitly anyway so the result never depends on umask.
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err(tmp, e))?;
    f.write_all(bytes).map_err(|e| io_err(tmp, e))?;
    f.sync_all().map_err(|e| io_err(tmp, e))
}
