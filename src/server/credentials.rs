//! The access keys a server accepts, in the AWS shared-credentials format:
//!
//! ```text
//! [default]
//! aws_access_key_id = AKIA...
//! aws_secret_access_key = ...
//! ```
//!
//! Several profiles are several accepted keys. A profile may also carry
//! `sluice_account_id = 111122223333` (12 digits): the account its key
//! belongs to; keys without one belong to the server's default account.
//! The format is a handful of lines of `[profile]` and `name = value`, so
//! it is read here rather than with an INI crate; errors name the line.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;

use crate::crypto::{create_private, random, to_base64};
use crate::store::AccountId;

/// The file a server writes its generated key to, in its data directory.
pub const GENERATED_FILE: &str = "credentials";

/// Accepted access keys. Its `Debug` shows the key ids only.
#[derive(Clone, Default)]
pub struct Credentials {
    secrets: HashMap<String, String>,
    /// The account of each key that names one.
    accounts: HashMap<String, AccountId>,
}

/// A profile being read.
#[derive(Default)]
struct Profile {
    name: String,
    id: Option<String>,
    secret: Option<String>,
    account: Option<AccountId>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.secrets.keys().collect();
        ids.sort();
        f.debug_struct("Credentials")
            .field("access_key_ids", &ids)
            .finish()
    }
}

impl Credentials {
    /// Parses a shared-credentials file's text.
    ///
    /// # Errors
    ///
    /// The line that is not `[profile]`, `name = value`, a comment or
    /// blank; a profile with an id but no secret (or the reverse); no key
    /// at all.
    pub fn parse(text: &str) -> Result<Credentials, String> {
        let mut secrets = HashMap::new();
        let mut accounts = HashMap::new();
        let mut profile: Option<Profile> = None;
        let mut finish = |p: Option<Profile>| match p {
            None => Ok(()),
            Some(Profile {
                id: Some(id),
                secret: Some(secret),
                account,
                ..
            }) => {
                if let Some(a) = account {
                    accounts.insert(id.clone(), a);
                }
                secrets.insert(id, secret);
                Ok(())
            }
            // A profile of other settings (region, output, ...).
            Some(Profile {
                id: None,
                secret: None,
                account: None,
                ..
            }) => Ok(()),
            Some(Profile { name, .. }) => Err(format!(
                "profile [{name}] needs both aws_access_key_id and aws_secret_access_key"
            )),
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                finish(profile.take())?;
                profile = Some(Profile {
                    name: name.trim().to_owned(),
                    ..Profile::default()
                });
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!("line {}: expected `name = value`", i + 1));
            };
            let Some(p) = profile.as_mut() else {
                return Err(format!("line {}: a setting before any [profile]", i + 1));
            };
            match k.trim() {
                "aws_access_key_id" => p.id = Some(v.trim().to_owned()),
                "aws_secret_access_key" => p.secret = Some(v.trim().to_owned()),
                "sluice_account_id" => {
                    let v = v.trim();
                    let Some(a) = AccountId::parse(v) else {
                        return Err(format!(
                            "line {}: sluice_account_id is 12 digits, not {v:?}",
                            i + 1
                        ));
                    };
                    p.account = Some(a);
                }
                _ => {}
            }
        }
        finish(profile)?;
        if secrets.is_empty() {
            return Err("no profile with aws_access_key_id and aws_secret_access_key".into());
        }
        Ok(Credentials { secrets, accounts })
    }

    /// Reads a shared-credentials file.
    ///
    /// # Errors
    ///
    /// When it cannot be read, or as [`Credentials::parse`], naming the file.
    pub fn load(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Credentials::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The key in `dir/credentials`, generated (mode `0600`) if there is
    /// none; also says whether it was generated.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or written.
    pub fn load_or_generate(dir: &Path) -> Result<(Credentials, bool), String> {
        let path = dir.join(GENERATED_FILE);
        match create_private(&path) {
            Ok(mut f) => {
                let id: [u8; 16] = random();
                let secret = to_base64(&random::<30>());
                // Like AWS's: AKIA and 16 base-32 characters.
                const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
                let id: String = "AKIA"
                    .chars()
                    .chain(id.iter().map(|b| ALPHABET[usize::from(b % 32)] as char))
                    .collect();
                let text = format!(
                    "[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n"
                );
                f.write_all(text.as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Ok((Credentials::parse(&text)?, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((Credentials::load(&path)?, false))
            }
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// The secret of an access key id.
    pub fn secret(&self, key_id: &str) -> Option<&str> {
        self.secrets.get(key_id).map(String::as_str)
    }

    /// The account a key's profile names, if it names one (otherwise the
    /// key belongs to the server's default account).
    pub fn account(&self, key_id: &str) -> Option<&AccountId> {
        self.accounts.get(key_id)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_keys() {
        let c = Credentials::parse(
            "# ours\n[default]\naws_access_key_id=A\naws_secret_access_key = s1\n\n\
             [other]\nregion = us-east-1\naws_access_key_id = B\naws_secret_access_key = s2\n\
             [settings-only]\nregion = eu-west-1\n",
        )
        .unwrap();
        assert_eq!(
            (c.secret("A"), c.secret("B"), c.len()),
            (Some("s1"), Some("s2"), 2)
        );
        assert!(Credentials::parse("[x]\naws_access_key_id = A\n").is_err());
        let c = Credentials::parse(
            "[a]\naws_access_key_id = A\naws_secret_access_key = s\n\
             sluice_account_id = 111122223333\n[b]\naws_access_key_id = B\n\
             aws_secret_access_key = t\n",
        )
        .unwrap();
        assert_eq!(c.account("A").map(AccountId::as_str), Some("111122223333"));
        assert_eq!(c.account("B"), None);
        let e = Credentials::parse(
            "[a]\naws_access_key_id = A\naws_secret_access_key = s\nsluice_account_id = 12\n",
        )
        .unwrap_err();
        assert!(e.contains("line 4") && e.contains("12 digits"), "{e}");
        assert!(Credentials::parse("oops\n").unwrap_err().contains("line 1"));
        assert!(Credentials::parse("").is_err());
    }

    #[test]
    fn a_generated_key_is_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (a, made) = Credentials::load_or_generate(dir.path()).unwrap();
        let (b, again) = Credentials::load_or_generate(dir.path()).unwrap();
        assert!(made && !again);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(dir.path().join(GENERATED_FILE)).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
    }
}
