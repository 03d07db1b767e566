//! ExternalSecret template functions for keys and certificates: PKCS#12 bundles both ways,
//! certificate chains and JWKs as PEM. Errors name the function, never a value.
//!
//! As upstream, the reading functions take a bundle as the file's bytes (a binary value, or
//! `b64dec` of base64 text) and the writing ones give it as base64.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p12_keystore::{
    Certificate, KeyStore, KeyStoreEntry, Pkcs12Archive, PrivateKey, PrivateKeyChain,
};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, PrivateKeyInfoRef};
use rsa::{BoxedUint, PrivateKey as RsaPrivateKey, PublicKey as RsaPublicKey};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
use zeroize::Zeroizing;

use crate::sprig::{bytes, exactly, fail, text, texts};
use crate::value::{Func, FuncError, Value};

/// The functions, by name.
pub const FUNCTIONS: &[(&str, Func)] = &[
    ("pkcs12key", pkcs12key),
    ("pkcs12keyPass", pkcs12key_pass),
    ("pkcs12cert", pkcs12cert),
    ("pkcs12certPass", pkcs12cert_pass),
    ("pemToPkcs12", pem_to_pkcs12),
    ("pemToPkcs12Pass", pem_to_pkcs12_pass),
    ("fullPemToPkcs12", full_pem_to_pkcs12),
    ("fullPemToPkcs12Pass", full_pem_to_pkcs12_pass),
    ("filterCertChain", filter_cert_chain),
    ("jwkPublicKeyPem", jwk_public_key_pem),
    ("jwkPrivateKeyPem", jwk_private_key_pem),
];

/// Most certificates a chain or bundle may hold (chains are ordered in quadratic time).
const MAX_CERTS: usize = 64;
/// Most iterations one password-based key derivation of a bundle may ask for (OWASP's
/// PBKDF2-SHA256 figure), and most such derivations.
const MAX_ITERATIONS: i32 = 600_000;
const MAX_DERIVATIONS: usize = 8;
/// Largest bundle read: chains with a key take a few kilobytes.
const MAX_BUNDLE_BYTES: usize = 256 * 1024;
/// Largest RSA modulus a JWK may carry.
const MAX_RSA_BITS: usize = 8192;
/// Iterations of the bundles written, as upstream's "modern" encoder.
const WRITE_ITERATIONS: u32 = 2048;

type Fail = Result<Value, FuncError>;

fn pkcs12key(args: &[Value]) -> Fail {
    bundle_key("pkcs12key", args, false)
}
fn pkcs12key_pass(args: &[Value]) -> Fail {
    bundle_key("pkcs12keyPass", args, true)
}
fn pkcs12cert(args: &[Value]) -> Fail {
    bundle_certs("pkcs12cert", args, false)
}
fn pkcs12cert_pass(args: &[Value]) -> Fail {
    bundle_certs("pkcs12certPass", args, true)
}
fn pem_to_pkcs12(args: &[Value]) -> Fail {
    write_bundle("pemToPkcs12", args, false, false)
}
fn pem_to_pkcs12_pass(args: &[Value]) -> Fail {
    write_bundle("pemToPkcs12Pass", args, true, false)
}
fn full_pem_to_pkcs12(args: &[Value]) -> Fail {
    write_bundle("fullPemToPkcs12", args, false, true)
}
fn full_pem_to_pkcs12_pass(args: &[Value]) -> Fail {
    write_bundle("fullPemToPkcs12Pass", args, true, true)
}

/// The bundle and password of a reading function: `BUNDLE` or `PASSWORD BUNDLE`.
fn read_args<'a>(
    function: &'static str,
    args: &'a [Value],
    with_password: bool,
) -> Result<(Cow<'a, [u8]>, Cow<'a, str>), FuncError> {
    if with_password {
        exactly(function, args, 2)?;
        Ok((bytes(function, args, 1)?, text(function, args, 0)?))
    } else {
        exactly(function, args, 1)?;
        Ok((bytes(function, args, 0)?, Cow::Borrowed("")))
    }
}

/// The one private key, the first certificate (the leaf) and the other certificates of a
/// PKCS#12 bundle, in the bundle's order.
struct Bundle {
    key: Zeroizing<Vec<u8>>,
    certs: Vec<Vec<u8>>,
}

/// Reads the bundle `der`, the bytes of a PKCS#12 file.
fn read_bundle(function: &'static str, der: &[u8], password: &str) -> Result<Bundle, FuncError> {
    if der.len() > MAX_BUNDLE_BYTES {
        return Err(fail(
            function,
            format!("the bundle is larger than {MAX_BUNDLE_BYTES} bytes"),
        ));
    }
    let derivations = key_derivations(der).map_err(|_| {
        if is_base64_of_der(der) {
            fail(
                function,
                "the bundle is base64 text: decode it to the PKCS#12 file's bytes first (b64dec)",
            )
        } else {
            fail(function, "the bundle is not a PKCS#12 file")
        }
    })?;
    if derivations.len() > MAX_DERIVATIONS {
        return Err(fail(
            function,
            format!("the bundle asks for more than {MAX_DERIVATIONS} password-derived keys"),
        ));
    }
    if derivations
        .iter()
        .any(|d| !d.is_some_and(|i| i <= MAX_ITERATIONS))
    {
        return Err(fail(
            function,
            format!(
                "the bundle asks for more than {MAX_ITERATIONS} iterations to derive a key, or for scrypt"
            ),
        ));
    }
    let archive = Pkcs12Archive::from_pkcs12(der, password).map_err(|_| {
        fail(
            function,
            "cannot open the PKCS#12 bundle (wrong password, or an unsupported or damaged file)",
        )
    })?;
    let mut keys = archive.keys.into_iter();
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return Err(fail(
            function,
            "the bundle must hold exactly one private key",
        ));
    };
    if archive.certs.is_empty() {
        return Err(fail(function, "the bundle holds no certificate"));
    }
    if archive.certs.len() > MAX_CERTS {
        return Err(fail(
            function,
            format!("the bundle holds more than {MAX_CERTS} certificates"),
        ));
    }
    Ok(Bundle {
        key: Zeroizing::new(key.key.as_der().to_vec()),
        certs: archive
            .certs
            .into_iter()
            .map(|c| c.cert.as_der().to_vec())
            .collect(),
    })
}

/// Whether `text` is base64 of DER (which starts with a SEQUENCE), with or without line
/// breaks: upstream does not read a bundle given so either, but the error can say what to do.
fn is_base64_of_der(text: &[u8]) -> bool {
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(compact)
        .map(Zeroizing::new)
        .is_ok_and(|der| der.first() == Some(&0x30))
}

/// The bundle's private key as PKCS#8 PEM (`PRIVATE KEY`).
fn bundle_key(function: &'static str, args: &[Value], with_password: bool) -> Fail {
    let (bundle, password) = read_args(function, args, with_password)?;
    let bundle = read_bundle(function, &bundle, &password)?;
    Ok(pem_text("PRIVATE KEY", bundle.key.to_vec()).into())
}

/// The bundle's certificates as PEM: leaf to root when they form one chain, else in the
/// bundle's order (the leaf first).
fn bundle_certs(function: &'static str, args: &[Value], with_password: bool) -> Fail {
    let (bundle, password) = read_args(function, args, with_password)?;
    let bundle = read_bundle(function, &bundle, &password)?;
    let ders = match parse_certs(function, &bundle.certs).and_then(|c| order_chain(function, &c)) {
        Ok(order) => order.into_iter().map(|i| bundle.certs[i].clone()).collect(),
        Err(_) => bundle.certs,
    };
    Ok(certs_pem(ders).into())
}

fn certs_pem(ders: Vec<Vec<u8>>) -> String {
    let blocks: Vec<pem::Pem> = ders
        .into_iter()
        .map(|d| pem::Pem::new("CERTIFICATE", d))
        .collect();
    go_pem(&blocks)
}

/// PEM blocks one after the other with `\n` line endings, as Go's `pem.Encode` writes them
/// (`pem::encode_many` puts a blank line between blocks).
pub(crate) fn go_pem(blocks: &[pem::Pem]) -> String {
    let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    blocks.iter().map(|b| pem::encode_config(b, lf)).collect()
}

/// The iterations of each password-based key derivation a bundle asks for before it is
/// decrypted: its MAC, each encrypted part and each encrypted key outside them (`None`
/// for scrypt or any other, which upstream cannot read either). Keys inside encrypted parts are
/// bounded by the bundle's size and the reader's own limit.
fn key_derivations(der: &[u8]) -> Result<Vec<Option<i32>>, rsa::pkcs8::der::Error> {
    use pkcs12::cms::content_info::ContentInfo;
    use pkcs12::cms::encrypted_data::EncryptedData;
    use pkcs12::pbe_params::{EncryptedPrivateKeyInfo, Pkcs12PbeParams};
    use rsa::pkcs8::der::asn1::{AnyRef, ObjectIdentifier as Oid, OctetString};
    use rsa::pkcs8::der::{Decode, Encode};
    use rsa::pkcs8::spki::AlgorithmIdentifierOwned;

    const DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
    const ENCRYPTED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.6");
    const PBES2: Oid = Oid::new_unwrap("1.2.840.113549.1.5.13");
    let iterations =
        |alg: &AlgorithmIdentifierOwned| -> Result<Option<i32>, rsa::pkcs8::der::Error> {
            let Some(params) = alg.parameters.as_ref() else {
                return Ok(Some(0));
            };
            let params = params.to_der()?;
            if alg.oid == PBES2 {
                return Ok(match pkcs5::pbes2::Parameters::from_der(&params)?.kdf {
                    pkcs5::pbes2::Kdf::Pbkdf2(kdf) => {
                        Some(i32::try_from(kdf.iteration_count).unwrap_or(i32::MAX))
                    }
                    _ => None,
                });
            }
            // The legacy PKCS#12 schemes; any other is refused later as unsupported.
            Ok(Pkcs12PbeParams::from_der(&params).map_or(Some(0), |p| Some(p.iterations)))
        };

    let pfx = pkcs12::pfx::Pfx::from_der(der)?;
    let mut found = Vec::new();
    if let Some(mac) = &pfx.mac_data {
        found.push(Some(mac.iterations));
    }
    let safe = pfx.auth_safe.content.decode_as::<OctetString>()?;
    for part in Vec::<ContentInfo>::from_der(safe.as_bytes())? {
        if part.content_type == ENCRYPTED_DATA {
            let data = part.content.decode_as::<EncryptedData>()?;
            found.push(iterations(&data.enc_content_info.content_enc_alg)?);
        } else if part.content_type == DATA {
            let bags = part.content.decode_as::<OctetString>()?;
            for bag in pkcs12::safe_bag::SafeContents::from_der(bags.as_bytes())? {
                if bag.bag_id == pkcs12::PKCS_12_PKCS8_KEY_BAG_OID {
                    let inner = AnyRef::from_der(&bag.bag_value)?;
                    let key = EncryptedPrivateKeyInfo::from_der(inner.value())?;
                    found.push(iterations(&key.encryption_algorithm)?);
                }
            }
        }
        if found.len() > MAX_DERIVATIONS {
            break;
        }
    }
    Ok(found)
}

fn pem_text(tag: &str, der: Vec<u8>) -> String {
    let block = pem::Pem::new(tag, der);
    let text = pem::encode_config(
        &block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    // `Pem` does not wipe its contents; this is the copy that leaves.
    let mut der = block.into_contents();
    zeroize::Zeroize::zeroize(&mut der);
    text
}

/// A certificate's key identifiers, empty when absent (absent ones match each other, as
/// upstream compares them).
struct Ids {
    subject: Vec<u8>,
    authority: Option<Vec<u8>>,
}

impl Ids {
    fn is_root(&self) -> bool {
        self.authority.as_ref().is_none_or(|a| *a == self.subject)
    }
}

fn parse_certs(function: &'static str, ders: &[Vec<u8>]) -> Result<Vec<Ids>, FuncError> {
    ders.iter()
        .map(|der| {
            let (_, cert) = X509Certificate::from_der(der)
                .map_err(|_| fail(function, "a certificate cannot be parsed"))?;
            let mut ids = Ids {
                subject: Vec::new(),
                authority: None,
            };
            for ext in cert.extensions() {
                match ext.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(id) => ids.subject = id.0.to_vec(),
                    ParsedExtension::AuthorityKeyIdentifier(aki) => {
                        ids.authority = aki.key_identifier.as_ref().map(|id| id.0.to_vec())
                    }
                    _ => {}
                }
            }
            Ok(ids)
        })
        .collect()
}

/// The certificates' indexes from leaf to root, linking each to the first other one whose
/// subject key identifier is its authority key identifier. Fails unless exactly one
/// certificate signs none of the others, or when the links loop.
fn order_chain(function: &'static str, certs: &[Ids]) -> Result<Vec<usize>, FuncError> {
    let mut parent = vec![None; certs.len()];
    let mut is_parent = vec![false; certs.len()];
    for (i, cert) in certs.iter().enumerate() {
        let authority = cert.authority.as_deref().unwrap_or_default();
        if let Some(j) = (0..certs.len()).find(|&j| j != i && certs[j].subject == authority) {
            parent[i] = Some(j);
            is_parent[j] = true;
        }
    }
    let mut leaves = (0..certs.len()).filter(|&i| !is_parent[i]);
    let leaf = match (leaves.next(), leaves.next()) {
        (Some(leaf), None) => leaf,
        (Some(_), Some(_)) => {
            return Err(fail(
                function,
                "found more than one leaf, or unrelated certificates",
            ));
        }
        (None, _) => return Err(fail(function, "no leaf certificate found")),
    };
    let mut order = vec![leaf];
    let mut at = leaf;
    while let Some(next) = parent[at] {
        if order.len() == certs.len() {
            return Err(fail(function, "the certificates' links form a cycle"));
        }
        order.push(next);
        at = next;
    }
    Ok(order)
}

fn pem_blocks(
    function: &'static str,
    argument: usize,
    text: &str,
) -> Result<Vec<pem::Pem>, FuncError> {
    let blocks = pem::parse_many(text.as_bytes())
        .map_err(|_| fail(function, format!("argument {argument} is not PEM")))?;
    if blocks.len() > MAX_CERTS {
        return Err(fail(
            function,
            format!("argument {argument} holds more than {MAX_CERTS} PEM blocks"),
        ));
    }
    Ok(blocks)
}

/// `leaf`, `intermediate` or `root` certificate(s) of a PEM chain, as PEM; empty when the
/// chain has none of that kind.
fn filter_cert_chain(args: &[Value]) -> Fail {
    const F: &str = "filterCertChain";
    let [kind, chain] = texts::<2>(F, args)?;
    let ders: Vec<Vec<u8>> = pem_blocks(F, 2, &chain)?
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect();
    let ids = parse_certs(F, &ders)?;
    let order = order_chain(F, &ids)?;
    let picked: Vec<usize> = match kind.as_ref() {
        "leaf" => {
            let leaf = order[0];
            let signed = ids[leaf]
                .authority
                .as_ref()
                .is_some_and(|a| *a != ids[leaf].subject);
            if signed { vec![leaf] } else { vec![] }
        }
        "intermediate" => order
            .iter()
            .skip(1)
            .copied()
            .take_while(|&i| !ids[i].is_root())
            .collect(),
        "root" => order
            .last()
            .copied()
            .filter(|&i| ids[i].is_root())
            .into_iter()
            .collect(),
        _ => vec![],
    };
    Ok(certs_pem(picked.into_iter().map(|i| ders[i].clone()).collect()).into())
}

/// A private key in PEM (PKCS#1 RSA, PKCS#8, or SEC1 EC) as PKCS#8 DER.
fn pkcs8_of(function: &'static str, key_pem: &str) -> Result<Zeroizing<Vec<u8>>, FuncError> {
    let block = pem::parse(key_pem.as_bytes())
        .map_err(|_| fail(function, "argument 2 is not a PEM private key"))?;
    let der = Zeroizing::new(block.into_contents());
    if let Ok(key) = RsaPrivateKey::from_pkcs1_der(&der) {
        return key
            .to_pkcs8_der()
            .map(|doc| Zeroizing::new(doc.as_bytes().to_vec()))
            .map_err(|_| fail(function, "cannot encode the private key"));
    }
    if PrivateKeyInfoRef::try_from(der.as_slice()).is_ok() {
        return Ok(der);
    }
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
        ECDSA_P521_SHA512_ASN1_SIGNING, EcdsaKeyPair,
    };
    for curve in [
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &ECDSA_P384_SHA384_ASN1_SIGNING,
        &ECDSA_P521_SHA512_ASN1_SIGNING,
    ] {
        if let Ok(pair) = EcdsaKeyPair::from_private_key_der(curve, &der) {
            return pair
                .to_pkcs8v1()
                .map(|doc| Zeroizing::new(doc.as_ref().to_vec()))
                .map_err(|_| fail(function, "cannot encode the private key"));
        }
    }
    Err(fail(
        function,
        "the private key is not PKCS#1, PKCS#8 or SEC1 (EC)",
    ))
}

/// A base64 PKCS#12 bundle of the first certificate of `cert` (all of them with
/// `chain`, the first being the leaf) and `key`.
fn write_bundle(function: &'static str, args: &[Value], with_password: bool, chain: bool) -> Fail {
    let (cert, key, password) = if with_password {
        let [cert, key, password] = texts::<3>(function, args)?;
        (cert, key, password)
    } else {
        let [cert, key] = texts::<2>(function, args)?;
        (cert, key, Cow::Borrowed(""))
    };
    let mut blocks = pem_blocks(function, 1, &cert)?;
    if blocks.is_empty() {
        return Err(fail(function, "argument 1 holds no PEM certificate"));
    }
    if !chain {
        blocks.truncate(1);
    }
    let certs = blocks
        .iter()
        .map(|b| {
            Certificate::from_der(b.contents())
                .map_err(|_| fail(function, "a certificate of argument 1 cannot be parsed"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKey::from_der(&pkcs8_of(function, &key)?)
        .map_err(|_| fail(function, "the private key cannot be used"))?;
    let local_key_id = Sha256::digest(blocks[0].contents()).to_vec();
    let mut store = KeyStore::new();
    store.add_entry(
        "1",
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
    );
    let der = Zeroizing::new(
        store
            .writer(&password)
            .encryption_iterations(WRITE_ITERATIONS)
            .mac_iterations(WRITE_ITERATIONS)
            .write()
            .map_err(|_| fail(function, "cannot write the PKCS#12 bundle"))?,
    );
    Ok(STANDARD.encode(der.as_slice()).into())
}

/// A JWK's base64url member as bytes.
fn member(
    function: &'static str,
    jwk: &serde_json::Value,
    name: &str,
) -> Result<Zeroizing<Vec<u8>>, FuncError> {
    let text = jwk
        .get(name)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| fail(function, format!("the JWK has no {name:?} member")))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map(Zeroizing::new)
        .map_err(|_| {
            fail(
                function,
                format!("the JWK's {name:?} member is not base64url"),
            )
        })
}

fn uint(
    function: &'static str,
    jwk: &serde_json::Value,
    name: &str,
) -> Result<BoxedUint, FuncError> {
    let bytes = member(function, jwk, name)?;
    if bytes.is_empty() || bytes.len() * 8 > MAX_RSA_BITS {
        return Err(fail(
            function,
            format!("the JWK's {name:?} member has an unsupported size"),
        ));
    }
    let bits = u32::try_from(bytes.len() * 8).unwrap_or(u32::MAX);
    BoxedUint::from_be_slice(&bytes, bits).map_err(|_| {
        fail(
            function,
            format!("the JWK's {name:?} member is not a number"),
        )
    })
}

/// A JWK's JSON, its key type, and whether it is private (has `d`).
fn parse_jwk(
    function: &'static str,
    text: &str,
) -> Result<(serde_json::Value, String, bool), FuncError> {
    let jwk: serde_json::Value = serde_json::from_str(text)
        .map_err(|_| fail(function, "the argument is not a JWK (JSON object)"))?;
    let kty = jwk
        .get("kty")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| fail(function, "the JWK has no \"kty\" member"))?
        .to_string();
    let private = jwk.get("d").is_some();
    Ok((jwk, kty, private))
}

type Curve = (
    &'static aws_lc_rs::signature::EcdsaSigningAlgorithm,
    &'static aws_lc_rs::signature::EcdsaVerificationAlgorithm,
    usize,
);

fn curve(function: &'static str, jwk: &serde_json::Value) -> Result<Curve, FuncError> {
    use aws_lc_rs::signature::*;
    match jwk.get("crv").and_then(serde_json::Value::as_str) {
        Some("P-256") => Ok((&ECDSA_P256_SHA256_ASN1_SIGNING, &ECDSA_P256_SHA256_ASN1, 32)),
        Some("P-384") => Ok((&ECDSA_P384_SHA384_ASN1_SIGNING, &ECDSA_P384_SHA384_ASN1, 48)),
        Some("P-521") => Ok((&ECDSA_P521_SHA512_ASN1_SIGNING, &ECDSA_P521_SHA512_ASN1, 66)),
        _ => Err(fail(
            function,
            "the JWK's curve is not supported (P-256, P-384 or P-521)",
        )),
    }
}

/// The uncompressed point `04 || x || y` of an EC JWK.
fn ec_point(
    function: &'static str,
    jwk: &serde_json::Value,
    size: usize,
) -> Result<Vec<u8>, FuncError> {
    let (x, y) = (member(function, jwk, "x")?, member(function, jwk, "y")?);
    if x.len() != size || y.len() != size {
        return Err(fail(function, "the JWK's point does not fit its curve"));
    }
    Ok([&[4u8][..], &x, &y].concat())
}

/// The 32 bytes of an Ed25519 JWK's member (`x`, the public key; `d`, the seed).
fn ed25519_member(
    function: &'static str,
    jwk: &serde_json::Value,
    name: &str,
) -> Result<Zeroizing<Vec<u8>>, FuncError> {
    if jwk.get("crv").and_then(serde_json::Value::as_str) != Some("Ed25519") {
        return Err(fail(
            function,
            "the OKP JWK's curve is not supported (Ed25519)",
        ));
    }
    let bytes = member(function, jwk, name)?;
    if bytes.len() != 32 {
        return Err(fail(
            function,
            format!("the JWK's {name:?} member is not 32 bytes"),
        ));
    }
    Ok(bytes)
}

/// A public JWK (RSA, EC or Ed25519) as a PKIX PEM `PUBLIC KEY`.
fn jwk_public_key_pem(args: &[Value]) -> Fail {
    const F: &str = "jwkPublicKeyPem";
    let [text] = texts::<1>(F, args)?;
    let (jwk, kty, private) = parse_jwk(F, &text)?;
    if private {
        return Err(fail(F, "the JWK is a private key: use jwkPrivateKeyPem"));
    }
    let der = match kty.as_str() {
        "RSA" => RsaPublicKey::new(uint(F, &jwk, "n")?, uint(F, &jwk, "e")?)
            .map_err(|_| fail(F, "the JWK is not a valid RSA public key"))?
            .to_public_key_der()
            .map_err(|_| fail(F, "cannot encode the public key"))?
            .into_vec(),
        "EC" => {
            use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
            let (_, verify, size) = curve(F, &jwk)?;
            let key = aws_lc_rs::signature::ParsedPublicKey::new(verify, ec_point(F, &jwk, size)?)
                .map_err(|_| fail(F, "the JWK's point is not on its curve"))?;
            let der: PublicKeyX509Der = key
                .as_der()
                .map_err(|_| fail(F, "cannot encode the public key"))?;
            der.as_ref().to_vec()
        }
        "OKP" => {
            use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
            let x = ed25519_member(F, &jwk, "x")?;
            let key = aws_lc_rs::signature::ParsedPublicKey::new(
                &aws_lc_rs::signature::ED25519,
                x.as_slice(),
            )
            .map_err(|_| fail(F, "the JWK is not a valid Ed25519 public key"))?;
            let der: PublicKeyX509Der = key
                .as_der()
                .map_err(|_| fail(F, "cannot encode the public key"))?;
            der.as_ref().to_vec()
        }
        _ => {
            return Err(fail(
                F,
                "the JWK's key type is not supported (RSA, EC or OKP)",
            ));
        }
    };
    Ok(pem_text("PUBLIC KEY", der).into())
}

/// A private JWK (RSA with its primes, EC or Ed25519) as a PKCS#8 PEM `PRIVATE KEY`.
fn jwk_private_key_pem(args: &[Value]) -> Fail {
    const F: &str = "jwkPrivateKeyPem";
    let [text] = texts::<1>(F, args)?;
    let (jwk, kty, private) = parse_jwk(F, &text)?;
    if !private {
        return Err(fail(F, "the JWK is a public key: use jwkPublicKeyPem"));
    }
    let der = match kty.as_str() {
        "RSA" => {
            let primes = vec![uint(F, &jwk, "p")?, uint(F, &jwk, "q")?];
            let key = RsaPrivateKey::from_components(
                uint(F, &jwk, "n")?,
                uint(F, &jwk, "e")?,
                uint(F, &jwk, "d")?,
                primes,
            )
            .map_err(|_| fail(F, "the JWK is not a valid RSA private key"))?;
            key.to_pkcs8_der()
                .map_err(|_| fail(F, "cannot encode the private key"))?
                .as_bytes()
                .to_vec()
        }
        "EC" => {
            let (sign, _, size) = curve(F, &jwk)?;
            let d = member(F, &jwk, "d")?;
            if d.len() != size {
                return Err(fail(F, "the JWK's private scalar does not fit its curve"));
            }
            let pair = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_and_public_key(
                sign,
                &d,
                &ec_point(F, &jwk, size)?,
            )
            .map_err(|_| fail(F, "the JWK is not a valid EC private key"))?;
            pair.to_pkcs8v1()
                .map_err(|_| fail(F, "cannot encode the private key"))?
                .as_ref()
                .to_vec()
        }
        "OKP" => {
            let (seed, x) = (ed25519_member(F, &jwk, "d")?, ed25519_member(F, &jwk, "x")?);
            // PKCS#8 v1, without the public key, as Go writes it.
            aws_lc_rs::signature::Ed25519KeyPair::from_seed_and_public_key(&seed, &x)
                .map_err(|_| fail(F, "the JWK is not a valid Ed25519 private key"))?
                .to_pkcs8v1()
                .map_err(|_| fail(F, "cannot encode the private key"))?
                .as_ref()
                .to_vec()
        }
        _ => {
            return Err(fail(
                F,
                "the JWK's key type is not supported (RSA, EC or OKP)",
            ));
        }
    };
    Ok(pem_text("PRIVATE KEY", der).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tests::{render, render_values};

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../testdata/pki/", $name))
        };
    }
    /// A bundle as base64 text, as a Secret or a provider's string value would hold it.
    macro_rules! bundle {
        ($name:literal) => {
            STANDARD.encode(include_bytes!(concat!("../testdata/pki/", $name)))
        };
    }

    /// The DER of each PEM block, to compare PEM texts whatever their line endings.
    fn ders(pem_text: &str) -> Vec<(String, Vec<u8>)> {
        pem::parse_many(pem_text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|b| (b.tag().to_string(), b.into_contents()))
            .collect()
    }

    fn chain() -> String {
        [
            fixture!("leaf.crt"),
            fixture!("intermediate.crt"),
            fixture!("root.crt"),
        ]
        .concat()
    }

    #[test]
    fn pkcs12key_gives_the_pkcs8_key_of_bundles_with_and_without_a_password() {
        let expected = ders(fixture!("leaf.key"));
        let nopass = render(
            "{{ .b | b64dec | pkcs12key }}",
            &[("b", &bundle!("nopass.p12"))],
        )
        .unwrap();
        assert_eq!(ders(&nopass), expected);
        assert!(
            nopass.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{nopass}"
        );
        for name in [bundle!("pass.p12"), bundle!("legacy.p12")] {
            let key = render(
                "{{ .b | b64dec | pkcs12keyPass .p }}",
                &[("p", "test-only"), ("b", &name)],
            )
            .unwrap();
            assert_eq!(ders(&key), expected);
        }
    }

    #[test]
    fn pkcs12cert_gives_the_chain_from_leaf_to_root() {
        let certs = render(
            "{{ .b | b64dec | pkcs12cert }}",
            &[("b", &bundle!("nopass.p12"))],
        )
        .unwrap();
        assert_eq!(
            certs,
            chain(),
            "PEM as Go writes it, one block after the other"
        );
        let certs = render(
            "{{ pkcs12certPass .p (b64dec .b) }}",
            &[("p", "test-only"), ("b", &bundle!("pass.p12"))],
        )
        .unwrap();
        assert_eq!(ders(&certs), ders(&chain()));
    }

    #[test]
    fn pkcs12_errors_name_the_function_and_no_value() {
        let bundle = bundle!("pass.p12");
        let error = render(
            "{{ pkcs12keyPass .p (b64dec .b) }}",
            &[("p", "wrong-guess"), ("b", &bundle)],
        )
        .unwrap_err();
        assert!(error.contains("pkcs12keyPass"), "{error}");
        assert!(error.contains("password"), "{error}");
        assert!(
            !error.contains("wrong-guess") && !error.contains(&bundle[..16]),
            "{error}"
        );
        let error = render("{{ .b | pkcs12cert }}", &[("b", "bm90IGEgYnVuZGxl")]).unwrap_err();
        assert!(
            error.contains("pkcs12cert") && error.contains("not a PKCS#12"),
            "{error}"
        );
        // Upstream reads the file's bytes only; base64 text gets a hint.
        let error = render("{{ .b | pkcs12key }}", &[("b", &bundle)]).unwrap_err();
        assert!(
            error.contains("pkcs12key: the bundle is base64 text") && error.contains("b64dec"),
            "{error}"
        );
    }

    #[test]
    fn a_binary_value_is_read_as_the_bundle_it_is() {
        let data = [(
            "b",
            Value::from_bytes(include_bytes!("../testdata/pki/nopass.p12").to_vec()),
        )];
        assert!(matches!(data[0].1, Value::Bytes(_)));
        let certs = render_values("{{ .b | pkcs12cert }}", &data).unwrap();
        assert_eq!(ders(&certs), ders(&chain()));
        let key = render_values("{{ pkcs12key .b }}", &data).unwrap();
        assert_eq!(ders(&key), ders(fixture!("leaf.key")));
    }

    #[test]
    fn bundles_asking_for_too_much_work_are_refused_before_decryption() {
        let error = render(
            "{{ pkcs12keyPass .p (b64dec .b) }}",
            &[("p", "test-only"), ("b", &bundle!("costly.p12"))],
        )
        .unwrap_err();
        assert!(
            error.contains("pkcs12keyPass") && error.contains("iterations"),
            "{error}"
        );
    }

    #[test]
    fn pem_to_pkcs12_round_trips_with_each_key_format() {
        for key in [fixture!("leaf.key"), fixture!("leaf.sec1.pem")] {
            let data = [("c", fixture!("leaf.crt")), ("k", key)];
            let key_back = render("{{ pemToPkcs12 .c .k | b64dec | pkcs12key }}", &data).unwrap();
            assert_eq!(ders(&key_back), ders(fixture!("leaf.key")));
            let certs_back =
                render("{{ pemToPkcs12 .c .k | b64dec | pkcs12cert }}", &data).unwrap();
            assert_eq!(ders(&certs_back), ders(fixture!("leaf.crt")));
        }
        // Only the first certificate goes in, without `full`.
        let chain = chain();
        let data = [("c", chain.as_str()), ("k", fixture!("leaf.key"))];
        let certs = render(
            "{{ pemToPkcs12Pass .c .k \"pw\" | b64dec | pkcs12certPass \"pw\" }}",
            &data,
        )
        .unwrap();
        assert_eq!(ders(&certs), ders(fixture!("leaf.crt")));
    }

    #[test]
    fn full_pem_to_pkcs12_keeps_the_chain() {
        let chain = chain();
        let data = [("c", chain.as_str()), ("k", fixture!("leaf.key"))];
        for (template, password) in [
            ("fullPemToPkcs12 .c .k", ""),
            ("fullPemToPkcs12Pass .c .k \"pw\"", "pw"),
        ] {
            let read = format!("{{{{ {template} | b64dec | pkcs12certPass \"{password}\" }}}}");
            assert_eq!(ders(&render(&read, &data).unwrap()), ders(&chain));
        }
        let wrong = "{{ fullPemToPkcs12Pass .c .k \"pw\" | b64dec | pkcs12cert }}";
        assert!(render(wrong, &data).unwrap_err().contains("password"));
    }

    #[test]
    fn pem_to_pkcs12_accepts_a_pkcs1_rsa_key() {
        // The key does not match the certificate: upstream does not check that either.
        let data = [
            ("c", fixture!("leaf.crt")),
            ("k", fixture!("rsa.pkcs1.pem")),
        ];
        let key = render("{{ pemToPkcs12 .c .k | b64dec | pkcs12key }}", &data).unwrap();
        assert_eq!(ders(&key), ders(fixture!("rsa.key")));
    }

    #[test]
    fn bundles_written_open_with_openssl() {
        let chain = chain();
        let data = [("c", chain.as_str()), ("k", fixture!("leaf.key"))];
        let bundle = render("{{ fullPemToPkcs12Pass .c .k \"pw\" }}", &data).unwrap();
        let dir = std::env::temp_dir().join(format!("sealsync-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bundle.p12");
        std::fs::write(&path, STANDARD.decode(bundle).unwrap()).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["pkcs12", "-nodes", "-passin", "pass:pw", "-in"])
            .arg(&path)
            .output();
        std::fs::remove_dir_all(&dir).unwrap();
        let Ok(out) = out else {
            eprintln!("no openssl CLI: skipped");
            return;
        };
        assert!(out.status.success(), "openssl could not open the bundle");
        let text = String::from_utf8(out.stdout).unwrap();
        let blocks = ders(&text);
        assert_eq!(blocks.iter().filter(|(t, _)| t == "CERTIFICATE").count(), 3);
        assert!(blocks.contains(&ders(fixture!("leaf.key"))[0]));
    }

    #[test]
    fn filter_cert_chain_picks_leaf_intermediate_and_root() {
        let data = [("c", fixture!("chain-shuffled.pem"))];
        let pick = |kind: &str| {
            render(&format!("{{{{ filterCertChain \"{kind}\" .c }}}}"), &data).unwrap()
        };
        assert_eq!(ders(&pick("leaf")), ders(fixture!("leaf.crt")));
        assert_eq!(
            ders(&pick("intermediate")),
            ders(fixture!("intermediate.crt"))
        );
        assert_eq!(ders(&pick("root")), ders(fixture!("root.crt")));
        assert_eq!(pick("other"), "");
        // A lone root is no leaf; a chain without its root has none.
        let root = [("c", fixture!("root.crt"))];
        assert_eq!(
            render("{{ filterCertChain \"leaf\" .c }}", &root).unwrap(),
            ""
        );
        assert_eq!(
            ders(&render("{{ filterCertChain \"root\" .c }}", &root).unwrap()),
            ders(fixture!("root.crt"))
        );
        let partial = [fixture!("leaf.crt"), fixture!("intermediate.crt")].concat();
        let partial = [("c", partial.as_str())];
        assert_eq!(
            render("{{ filterCertChain \"root\" .c }}", &partial).unwrap(),
            ""
        );
        assert_eq!(
            ders(&render("{{ filterCertChain \"intermediate\" .c }}", &partial).unwrap()),
            ders(fixture!("intermediate.crt"))
        );
    }

    #[test]
    fn filter_cert_chain_refuses_what_is_no_single_chain() {
        let two_leaves = [
            fixture!("leaf.crt"),
            fixture!("root.crt"),
            fixture!("leaf.crt"),
        ]
        .concat();
        for (input, problem) in [
            (two_leaves.as_str(), "more than one leaf"),
            (fixture!("leaf.key"), "cannot be parsed"),
            ("", "no leaf"),
        ] {
            let error = render("{{ filterCertChain \"leaf\" .c }}", &[("c", input)]).unwrap_err();
            assert!(
                error.contains("filterCertChain") && error.contains(problem),
                "{error}"
            );
        }
    }

    #[test]
    fn jwks_become_pkix_public_and_pkcs8_private_pem() {
        for (function, jwk, pem, tag) in [
            (
                "jwkPublicKeyPem",
                fixture!("rsa.pub.jwk"),
                fixture!("rsa.pub.pem"),
                "PUBLIC",
            ),
            (
                "jwkPublicKeyPem",
                fixture!("ec.pub.jwk"),
                fixture!("leaf.pub.pem"),
                "PUBLIC",
            ),
            (
                "jwkPrivateKeyPem",
                fixture!("rsa.jwk"),
                fixture!("rsa.key"),
                "PRIVATE",
            ),
            (
                "jwkPrivateKeyPem",
                fixture!("ec.jwk"),
                fixture!("leaf.key"),
                "PRIVATE",
            ),
            (
                "jwkPublicKeyPem",
                fixture!("ed25519.pub.jwk"),
                fixture!("ed25519.pub.pem"),
                "PUBLIC",
            ),
            (
                "jwkPrivateKeyPem",
                fixture!("ed25519.jwk"),
                fixture!("ed25519.key"),
                "PRIVATE",
            ),
        ] {
            let out = render(&format!("{{{{ {function} .j }}}}"), &[("j", jwk)]).unwrap();
            assert!(
                out.starts_with(&format!("-----BEGIN {tag} KEY-----\n")),
                "{out}"
            );
            assert_eq!(ders(&out), ders(pem));
        }
    }

    #[test]
    fn jwk_errors_name_the_problem_and_no_value() {
        let off_curve = fixture!("ec.pub.jwk").replacen("\"y\": \"", "\"y\": \"A", 1);
        let cases = [
            ("jwkPublicKeyPem", fixture!("rsa.jwk"), "is a private key"),
            (
                "jwkPrivateKeyPem",
                fixture!("ec.pub.jwk"),
                "is a public key",
            ),
            (
                "jwkPublicKeyPem",
                r#"{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#,
                "not 32 bytes",
            ),
            (
                "jwkPublicKeyPem",
                r#"{"kty":"OKP","crv":"X448","x":"AAAA"}"#,
                "not supported (Ed25519)",
            ),
            (
                "jwkPublicKeyPem",
                r#"{"kty":"oct","k":"AAAA"}"#,
                "not supported",
            ),
            (
                "jwkPublicKeyPem",
                r#"{"kty":"EC","crv":"P-192","x":"AA","y":"AA"}"#,
                "curve",
            ),
            ("jwkPublicKeyPem", off_curve.as_str(), "point"),
            ("jwkPrivateKeyPem", "not json", "not a JWK"),
        ];
        for (function, jwk, problem) in cases {
            let error = render(&format!("{{{{ {function} .j }}}}"), &[("j", jwk)]).unwrap_err();
            assert!(
                error.contains(function) && error.contains(problem),
                "{error}"
            );
            assert!(jwk.len() <= 8 || !error.contains(&jwk[8..]), "{error}");
        }
    }
}
