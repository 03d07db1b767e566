//! Certificates of a test control plane: a CA, the API server's serving certificate,
//! client certificates, and the service-account signing key.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

/// PEM certificate and private key.
#[derive(Debug)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// The CA, and everything it signs.
#[derive(Debug)]
pub struct ClusterPki {
    pub ca: Pair,
    pub serving: Pair,
    pub admin: Pair,
    pub controller_manager: Pair,
    /// Service-account token signing key (PEM, PKCS#8) and its public key.
    pub service_account_key: String,
    pub service_account_public_key: String,
}

impl ClusterPki {
    pub fn generate() -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sealsync-test-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = Pair {
            cert: ca_cert.pem(),
            key: ca_key.serialize_pem(),
        };
        let issuer = Issuer::new(ca_params, ca_key);

        let sign = |cn: &str,
                    org: Option<&str>,
                    sans: Vec<SanType>,
                    usage: ExtendedKeyUsagePurpose|
         -> anyhow::Result<Pair> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name.push(DnType::CommonName, cn);
            if let Some(org) = org {
                params
                    .distinguished_name
                    .push(DnType::OrganizationName, org);
            }
            params.subject_alt_names = sans;
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer)?;
            Ok(Pair {
                cert: cert.pem(),
                key: key.serialize_pem(),
            })
        };
        let serving = sign(
            "kube-apiserver",
            None,
            vec![
                SanType::IpAddress([127, 0, 0, 1].into()),
                SanType::IpAddress([10, 0, 0, 1].into()),
                SanType::DnsName("localhost".try_into()?),
                SanType::DnsName("kubernetes.default.svc".try_into()?),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let admin = sign(
            "sealsync-admin",
            Some("system:masters"),
            vec![],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let controller_manager = sign(
            "system:kube-controller-manager",
            None,
            vec![],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let service_account = KeyPair::generate()?;
        Ok(Self {
            ca,
            serving,
            admin,
            controller_manager,
            service_account_key: service_account.serialize_pem(),
            service_account_public_key: service_account.public_key_pem(),
        })
    }
}
