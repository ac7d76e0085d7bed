"""An independent verifier for vaxtrail credentials: the eddsa-rdfc-2022 cryptosuite written from
its specification over pyld (JSON-LD to RDF and URDNA2015/RDFC-1.0 canonicalization), with
Ed25519 by `cryptography`. Nothing is fetched: every context comes from the input.

Input (stdin): {"credentials": [...], "didDocument": {...}, "contexts": {"<url>": {...}}}
Output (stdout): one line per credential, {"verified": bool, "error": "..."}.
"""
import copy
import hashlib
import json
import sys

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pyld import jsonld

ED25519_PUB = b"\xed\x01"


def loader_for(documents):
    def load(url, options=None):
        if url not in documents:
            raise jsonld.JsonLdError("not available offline: " + url, "loading document failed")
        return {"contextUrl": None, "documentUrl": url, "document": documents[url]}

    return load


def canonical(document, loader):
    return jsonld.normalize(
        document,
        {"algorithm": "URDNA2015", "format": "application/n-quads", "documentLoader": loader},
    )


def keys_of(did_document):
    keys = {}
    for method in did_document.get("verificationMethod", []):
        encoded = method.get("publicKeyMultibase", "")
        if not encoded.startswith("z"):
            continue
        raw = base58.b58decode(encoded[1:])
        if raw.startswith(ED25519_PUB) and len(raw) == 34:
            keys[method["id"]] = Ed25519PublicKey.from_public_bytes(raw[2:])
    return keys


def verify(credential, keys, loader):
    document = copy.deepcopy(credential)
    proof = document.pop("proof")
    if proof.get("type") != "DataIntegrityProof" or proof.get("cryptosuite") != "eddsa-rdfc-2022":
        return False, "not an eddsa-rdfc-2022 DataIntegrityProof"
    if proof.get("proofPurpose") != "assertionMethod":
        return False, "not an assertion"
    value = proof.pop("proofValue", "")
    if not value.startswith("z"):
        return False, "proofValue is not base58btc"
    signature = base58.b58decode(value[1:])
    key = keys.get(proof.get("verificationMethod"))
    if key is None:
        return False, "unknown verification method"
    configuration = dict(proof)
    configuration["@context"] = document["@context"]
    hash_data = (
        hashlib.sha256(canonical(configuration, loader).encode("utf-8")).digest()
        + hashlib.sha256(canonical(document, loader).encode("utf-8")).digest()
    )
    try:
        key.verify(signature, hash_data)
    except InvalidSignature:
        return False, "the signature does not verify"
    return True, None


def main():
    request = json.load(sys.stdin)
    loader = loader_for(request["contexts"])
    keys = keys_of(request["didDocument"])
    for credential in request["credentials"]:
        try:
            verified, error = verify(credential, keys, loader)
        except Exception as failure:  # a verdict per credential, whatever goes wrong
            verified, error = False, repr(failure)
        print(json.dumps({"verified": verified, "error": error}))


main()
