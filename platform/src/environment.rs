//! Where a service runs. In `development` (the local stack, the tests) the well-known development
//! secrets and the machine-local development token key are accepted; anywhere else a service that
//! finds one refuses to start, saying which variable to set. Nothing in production may run on a
//! secret that is printed in this repository.

use clap::{Args, ValueEnum};

/// The kind of deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// The local stack and the tests: development secrets and keys are accepted.
    Development,
    /// Anything else: development secrets and keys are refused at start.
    #[default]
    Production,
}

/// The deployment kind, read from `VAXTRAIL_ENVIRONMENT`.
#[derive(Clone, Debug, Args)]
pub struct EnvironmentArgs {
    /// `production` (the default: development secrets and keys are refused at start) or
    /// `development` (the local stack's scripts and the tests set it).
    #[arg(long = "environment", env = "VAXTRAIL_ENVIRONMENT", default_value = "production")]
    pub environment: Environment,
}

/// A development secret or key found outside development.
#[derive(Debug, thiserror::Error)]
#[error(
    "{variable} holds the development {what}, which is published in vaxtrail's source; outside development set {variable} to a secret of this deployment (or set VAXTRAIL_ENVIRONMENT=development on a developer's machine)"
)]
pub struct DevelopmentSecret {
    pub variable: &'static str,
    pub what: &'static str,
}

/// The secret keying event and certificate ids, read from `VAXTRAIL_ID_SECRET` by every process
/// that derives them (the command API, the signer, `vaxctl demo`): they must all hold the same.
#[derive(Clone, Debug, Args)]
pub struct IdSecretArgs {
    /// Secret keying event ids (command API) and certificate ids (signer), so nobody outside can
    /// compute them from a record. The default is for local development only: outside development
    /// the services refuse to start with it.
    #[arg(
        long = "id-secret",
        env = "VAXTRAIL_ID_SECRET",
        default_value = domain::ids::IdKey::DEVELOPMENT_SECRET,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub id_secret: crate::config::SecretUrl,
}

impl IdSecretArgs {
    /// The key, refused outside development when it is the development one.
    pub fn key(&self, environment: &EnvironmentArgs) -> Result<domain::ids::IdKey, DevelopmentSecret> {
        environment.refuse_development_secret(
            "VAXTRAIL_ID_SECRET",
            self.id_secret.expose(),
            domain::ids::IdKey::DEVELOPMENT_SECRET,
        )?;
        Ok(self.key_unchecked())
    }

    /// The key, whatever it is (an operator's tool that only derives ids).
    pub fn key_unchecked(&self) -> domain::ids::IdKey {
        domain::ids::IdKey::new(self.id_secret.expose().as_bytes())
    }
}

impl EnvironmentArgs {
    /// Whether this is a development deployment.
    pub fn is_development(&self) -> bool {
        self.environment == Environment::Development
    }

    /// Refuses `value` of `variable` outside development when it equals the development value.
    pub fn refuse_development_secret(
        &self,
        variable: &'static str,
        value: &str,
        development: &str,
    ) -> Result<(), DevelopmentSecret> {
        if !self.is_development() && value == development {
            return Err(DevelopmentSecret {
                variable,
                what: "secret",
            });
        }
        Ok(())
    }

    /// Refuses a token verifier that trusts a development key (`vaxctl dev-auth init`'s) outside
    /// development.
    pub fn refuse_development_jwks(&self, verifier: &crate::auth::Verifier) -> Result<(), DevelopmentSecret> {
        if !self.is_development() && verifier.trusts_development_keys() {
            return Err(DevelopmentSecret {
                variable: "VAXTRAIL_JWKS",
                what: "token key (a kid starting dev-)",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(environment: Environment) -> EnvironmentArgs {
        EnvironmentArgs { environment }
    }

    #[test]
    fn production_refuses_the_development_secret_and_names_the_variable() {
        let error = args(Environment::Production)
            .refuse_development_secret("VAXTRAIL_ID_SECRET", "dev", "dev")
            .unwrap_err();
        assert!(error.to_string().contains("VAXTRAIL_ID_SECRET"), "{error}");
        assert!(
            args(Environment::Production)
                .refuse_development_secret("VAXTRAIL_ID_SECRET", "a real secret", "dev")
                .is_ok()
        );
        assert!(
            args(Environment::Development)
                .refuse_development_secret("VAXTRAIL_ID_SECRET", "dev", "dev")
                .is_ok()
        );
    }

    #[test]
    fn production_refuses_a_jwks_with_the_development_key() {
        let key = crate::auth::DevKey::generate();
        let verifier = crate::auth::Verifier::from_jwks(&key.jwks(), "i", "a").unwrap();
        assert!(
            args(Environment::Production)
                .refuse_development_jwks(&verifier)
                .is_err()
        );
        assert!(
            args(Environment::Development)
                .refuse_development_jwks(&verifier)
                .is_ok()
        );
    }
}
