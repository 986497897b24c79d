//! Where the keyring lives: a local key file (`keyring.json`, mode 0600), or the same JSON
//! wrapped by an AWS KMS key (`keyring.kms.json`), which the server unwraps through the KMS
//! API at start-up (credentials from the standard `AWS_*` variables). With KMS the key
//! material never rests in the clear on disk.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use credvault_connect::aws::{AwsCredentials, KmsKey, kms_decrypt, kms_encrypt};
use credvault_crypto::Keyring;

/// The plain key file.
pub const PLAIN: &str = "keyring.json";
/// The KMS-wrapped key file.
pub const KMS: &str = "keyring.kms.json";
const KMS_FORMAT: &str = "credvault-keyring-kms/1";
const CONTEXT: &str = "keyring";

/// How the keyring is stored.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// A plain key file.
    Plain(PathBuf),
    /// A KMS-wrapped key file.
    Kms {
        /// The file.
        path: PathBuf,
        /// The wrapping key.
        key: KmsKey,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KmsFile {
    format: String,
    kms: KmsKey,
    blob: String,
}

fn creds() -> anyhow::Result<AwsCredentials> {
    AwsCredentials::from_env()
        .context("the keyring is wrapped by AWS KMS: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials)")
}

/// Both files the keyring may live in (for watching).
pub fn paths(data_dir: &Path) -> [PathBuf; 2] {
    [data_dir.join(PLAIN), data_dir.join(KMS)]
}

/// Loads the keyring, if there is one.
pub async fn load(data_dir: &Path) -> anyhow::Result<Option<(Keyring, KeySource)>> {
    let kms_path = data_dir.join(KMS);
    let plain = data_dir.join(PLAIN);
    if kms_path.exists() {
        if plain.exists() {
            bail!(
                "both {} and {} exist: keep only one",
                plain.display(),
                kms_path.display()
            );
        }
        let text = std::fs::read_to_string(&kms_path).with_context(|| format!("cannot read {}", kms_path.display()))?;
        let (kms, blob) = parse_kms_file(&text).with_context(|| kms_path.display().to_string())?;
        let bytes = kms_decrypt(&kms, &creds()?, &blob, CONTEXT)
            .await
            .context("KMS could not unwrap the keyring")?;
        let keyring = Keyring::from_bytes(&bytes).context("the unwrapped keyring is malformed")?;
        return Ok(Some((
            keyring,
            KeySource::Kms {
                path: kms_path,
                key: kms,
            },
        )));
    }
    if plain.exists() {
        let k = Keyring::load(&plain).with_context(|| format!("cannot load the key file {}", plain.display()))?;
        return Ok(Some((k, KeySource::Plain(plain))));
    }
    Ok(None)
}

/// Reads a KMS-wrapped key file's text: the wrapping key and the wrapped keyring (no KMS call).
pub fn parse_kms_file(text: &str) -> anyhow::Result<(KmsKey, Vec<u8>)> {
    let f: KmsFile = serde_json::from_str(text).context("not a KMS-wrapped key file")?;
    if f.format != KMS_FORMAT {
        bail!("unsupported format {}", f.format);
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(&f.blob)
        .context("corrupt KMS blob")?;
    Ok((f.kms, blob))
}

/// Writes the keyring back where it came from.
pub async fn save(source: &KeySource, keyring: &Keyring) -> anyhow::Result<()> {
    match source {
        KeySource::Plain(p) => keyring.save(p).with_context(|| format!("cannot write {}", p.display())),
        KeySource::Kms { path, key } => {
            let bytes = keyring.to_bytes()?;
            let blob = kms_encrypt(key, &creds()?, &bytes, CONTEXT)
                .await
                .context("KMS could not wrap the keyring")?;
            let f = KmsFile {
                format: KMS_FORMAT.into(),
                kms: key.clone(),
                blob: base64::engine::general_purpose::STANDARD.encode(blob),
            };
            let text = serde_json::to_vec_pretty(&f)?;
            credvault_crypto::write_private_file(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))
        }
    }
}

/// Overwrites a file with zeros before removing it (best effort against casual recovery).
fn shred(path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let len = std::fs::metadata(path)?.len();
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(&vec![0u8; usize::try_from(len).unwrap_or(0)])?;
    f.sync_all()?;
    std::fs::remove_file(path)?;
    Ok(())
}

/// Moves a plain key file under KMS: wraps it, checks the wrapped copy unwraps to the same
/// keys, then shreds the plain file.
pub async fn wrap_with_kms(data_dir: &Path, key: KmsKey) -> anyhow::Result<()> {
    let Some((keyring, KeySource::Plain(plain))) = load(data_dir).await? else {
        bail!("no plain key file in {} (already wrapped?)", data_dir.display());
    };
    let target = KeySource::Kms {
        path: data_dir.join(KMS),
        key,
    };
    save(&target, &keyring).await?;
    std::fs::rename(&plain, data_dir.join(".keyring.json.shredding"))?;
    match load(data_dir).await {
        Ok(Some((back, _))) if back.key_ids() == keyring.key_ids() => {}
        other => {
            std::fs::rename(data_dir.join(".keyring.json.shredding"), &plain)?;
            let _ = std::fs::remove_file(data_dir.join(KMS));
            bail!(
                "the KMS-wrapped keyring did not read back correctly ({:?}); kept the plain key file",
                other.err()
            );
        }
    }
    shred(&data_dir.join(".keyring.json.shredding"))?;
    Ok(())
}

/// Moves a KMS-wrapped keyring back to a plain key file.
pub async fn unwrap_from_kms(data_dir: &Path) -> anyhow::Result<()> {
    let Some((keyring, KeySource::Kms { path, .. })) = load(data_dir).await? else {
        bail!("the keyring in {} is not wrapped by KMS", data_dir.display());
    };
    keyring.save(&data_dir.join(PLAIN))?;
    std::fs::remove_file(path)?;
    Ok(())
}
