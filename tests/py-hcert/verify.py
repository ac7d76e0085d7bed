"""Verifies EU Digital COVID Certificates (HC1: texts) with independent implementations:
base45 (PyPI base45), ZLIB (Python's zlib), COSE_Sign1 and ES256 (pycose, cryptography),
CBOR (cbor2); the payload is validated against the EU DCC JSON schema (jsonschema).

stdin: {"certificates": ["HC1:..."], "trustList": {"certificates": [{"kid", "rawData"}]},
        "schema": "<path of DCC.combined-schema.json>"}
stdout: one JSON verdict per certificate, in order.
"""
import base64
import hashlib
import json
import sys
import zlib

import base45
import cbor2
import jsonschema
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from pycose.headers import KID, Algorithm
from pycose.keys import EC2Key
from pycose.keys.curves import P256
from pycose.messages import Sign1Message


def signers(trust_list):
    out = {}
    for entry in trust_list["certificates"]:
        der = base64.b64decode(entry["rawData"])
        kid = hashlib.sha256(der).digest()[:8]
        if base64.b64decode(entry["kid"]) != kid:
            raise ValueError("trust list kid is not the certificate's SHA-256 prefix")
        cert = x509.load_der_x509_certificate(der)
        numbers = cert.public_key().public_numbers()
        if not isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
            raise ValueError("not an EC key")
        out[kid] = (EC2Key(crv=P256, x=numbers.x.to_bytes(32, "big"), y=numbers.y.to_bytes(32, "big")), cert)
    return out


def verdict(text, keys, schema):
    try:
        if not text.startswith("HC1:"):
            return {"valid": False, "reason": "no HC1: prefix"}
        cose = zlib.decompress(base45.b45decode(text[4:]))
        tagged = cbor2.loads(cose)
        if isinstance(tagged, cbor2.CBORTag):
            if tagged.tag != 18:
                return {"valid": False, "reason": f"CBOR tag {tagged.tag}, not 18"}
        message = Sign1Message.decode(cose)
        kid = message.phdr.get(KID) or message.uhdr.get(KID)
        alg = message.phdr.get(Algorithm)
        if kid not in keys:
            return {"valid": False, "reason": "unknown kid"}
        key, cert = keys[kid]
        message.key = key
        if not message.verify_signature():
            return {"valid": False, "reason": "bad signature"}
        claims = cbor2.loads(message.payload)
        payload = claims[-260][1]
        errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(payload)]
        return {
            "valid": not errors,
            "reason": "; ".join(errors),
            "alg": getattr(alg, "fullname", str(alg)),
            "kid": base64.b64encode(kid).decode(),
            "iss": claims[1],
            "iat": claims[6],
            "exp": claims[4],
            "dscNotAfter": int(cert.not_valid_after_utc.timestamp()),
            "payload": payload,
        }
    except Exception as error:  # a verdict, not a crash: the caller asserts on it
        return {"valid": False, "reason": f"{type(error).__name__}: {error}"}


def main():
    request = json.load(sys.stdin)
    with open(request["schema"], encoding="utf-8") as f:
        schema = json.load(f)
    keys = signers(request["trustList"])
    for text in request["certificates"]:
        print(json.dumps(verdict(text, keys, schema)))


main()
