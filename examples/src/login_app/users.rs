//! The demo user directory. Passwords are kept only as argon2id hashes.

use std::collections::HashMap;
use std::fmt;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

/// A demo account: the credentials printed at start-up.
#[derive(Debug, Clone, Copy)]
pub struct DemoAccount {
    /// The user id stored in the session.
    pub id: u64,
    /// The name typed into the login form.
    pub username: &'static str,
    /// The password typed into the login form. Printed at start-up, because
    /// this is a demo; a real directory never stores plain passwords.
    pub password: &'static str,
    /// The email address shown on the profile page.
    pub email: &'static str,
    /// The single role of the account.
    pub role: &'static str,
}

/// The accounts of the demo, in the order they are printed.
pub const DEMO_ACCOUNTS: [DemoAccount; 2] = [
    DemoAccount {
        id: 1,
        username: "alice",
        password: "wonderland",
        email: "alice@example.test",
        role: "admin",
    },
    DemoAccount {
        id: 2,
        username: "bob",
        password: "builder",
        email: "bob@example.test",
        role: "viewer",
    },
];

/// A user of the directory, without the password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user id.
    pub id: u64,
    /// The login name.
    pub username: String,
    /// The email address.
    pub email: String,
    /// Role names such as `admin`.
    pub roles: Vec<String>,
}

struct Entry {
    user: User,
    /// The argon2id hash in PHC string form (`$argon2id$v=19$...`).
    password_hash: String,
}

/// Users by name, with a dummy hash so that an unknown name costs as much
/// time as a wrong password.
pub struct Users {
    by_name: HashMap<String, Entry>,
    dummy_hash: String,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Users")
            .field("usernames", &names)
            .finish_non_exhaustive()
    }
}

impl Users {
    /// Builds the directory of [`DEMO_ACCOUNTS`], hashing each password with
    /// argon2id and a fresh random salt.
    ///
    /// Hashing uses argon2's default parameters (19 MiB of memory, two
    /// passes), so it takes noticeable CPU time; build the directory once at
    /// start-up.
    ///
    /// # Errors
    ///
    /// The argon2 error if hashing fails, such as when the operating system
    /// cannot supply a random salt.
    pub fn demo() -> Result<Self, argon2::password_hash::Error> {
        let hasher = Argon2::default();
        let mut by_name = HashMap::new();
        for account in DEMO_ACCOUNTS {
            let password_hash = hasher
                .hash_password(account.password.as_bytes())?
                .to_string();
            let user = User {
                id: account.id,
                username: account.username.to_owned(),
                email: account.email.to_owned(),
                roles: vec![account.role.to_owned()],
            };
            by_name.insert(
                account.username.to_owned(),
                Entry {
                    user,
                    password_hash,
                },
            );
        }

        // The dummy password is random, so no typed password matches it.
        let dummy_password: [u8; 32] = rand::random();
        let dummy_hash = hasher.hash_password(&dummy_password)?.to_string();
        Ok(Self {
            by_name,
            dummy_hash,
        })
    }

    /// Returns the user when `password` is theirs.
    ///
    /// Runs exactly one argon2 verification whether or not the user exists,
    /// so the response time does not tell which usernames exist. It blocks
    /// for that time: call it from `tokio::task::spawn_blocking`.
    pub fn authenticate(&self, username: &str, password: &str) -> Option<&User> {
        let entry = self.by_name.get(username);
        let hash = entry.map_or(self.dummy_hash.as_str(), |entry| {
            entry.password_hash.as_str()
        });
        let verified = Argon2::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok();
        match entry {
            Some(entry) if verified => Some(&entry.user),
            _ => None,
        }
    }

    /// Returns the user with this name.
    pub fn get(&self, username: &str) -> Option<&User> {
        self.by_name.get(username).map(|entry| &entry.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_passwords_are_stored_as_argon2id_hashes() {
        let users = Users::demo().unwrap();
        for account in DEMO_ACCOUNTS {
            let hash = &users.by_name[account.username].password_hash;
            assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
            assert!(!hash.contains(account.password), "{hash}");
        }
        assert!(users.dummy_hash.starts_with("$argon2id$v=19$"));
    }

    #[test]
    fn authenticate_accepts_only_the_right_password() {
        let users = Users::demo().unwrap();
        let alice = users.authenticate("alice", "wonderland").unwrap();
        assert_eq!(alice.id, 1);
        assert_eq!(alice.email, "alice@example.test");
        assert_eq!(alice.roles, ["admin"]);
        assert_eq!(
            users.authenticate("bob", "builder").unwrap().roles,
            ["viewer"]
        );

        assert_eq!(users.authenticate("alice", "builder"), None);
        assert_eq!(users.authenticate("alice", "Wonderland"), None);
        assert_eq!(users.authenticate("alice", ""), None);
        assert_eq!(users.authenticate("carol", "wonderland"), None);
        assert_eq!(users.authenticate("", ""), None);
    }

    #[test]
    fn debug_output_shows_no_hashes() {
        let users = Users::demo().unwrap();
        let debug = format!("{users:?}");
        assert_eq!(debug, r#"Users { usernames: ["alice", "bob"], .. }"#);
    }
}
