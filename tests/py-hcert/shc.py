"""Verifies SMART Health Cards (shc:/ QR texts) with an independent JOSE library (jwcrypto):
the numeric QR encoding, the compact JWS (ES256) against the issuer's JWKS, the key id as the
RFC 7638 thumbprint, the raw-DEFLATE payload (Python's zlib), the FHIR bundle's shape, and the
card's rid against the key's revocation list.

stdin: {"cards": ["shc:/..."], "jwks": {"keys": [...]}, "crls": {"<kid>": {"rids": [...]}}}
stdout: one JSON verdict per card, in order.
"""
import json
import sys
import zlib

from jwcrypto import jwk, jws


def jws_of(text):
    if not text.startswith("shc:/"):
        raise ValueError("no shc:/ prefix")
    digits = text[5:]
    if len(digits) % 2:
        raise ValueError("odd number of digits")
    return "".join(chr(int(digits[i:i + 2]) + 45) for i in range(0, len(digits), 2))


def verdict(text, keys, crls):
    try:
        compact = jws_of(text)
        token = jws.JWS()
        token.deserialize(compact)
        header = token.jose_header
        if header.get("alg") != "ES256" or header.get("zip") != "DEF":
            return {"valid": False, "reason": f"header {header}"}
        key = keys.get(header.get("kid"))
        if key is None:
            return {"valid": False, "reason": "unknown kid"}
        if key.thumbprint() != header["kid"]:
            return {"valid": False, "reason": "kid is not the RFC 7638 thumbprint"}
        token.verify(key)
        payload = json.loads(zlib.decompress(token.objects["payload"], -15))
        vc = payload["vc"]
        bundle = vc["credentialSubject"]["fhirBundle"]
        types = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
        rid = vc.get("rid")
        revoked = rid in crls.get(header["kid"], {}).get("rids", [])
        return {
            "valid": True,
            "kid": header["kid"],
            "iss": payload["iss"],
            "nbf": payload["nbf"],
            "types": vc["type"],
            "fhirVersion": vc["credentialSubject"]["fhirVersion"],
            "resources": types,
            "bundle": bundle,
            "rid": rid,
            "revoked": revoked,
            "jwsLength": len(compact),
        }
    except Exception as error:  # a verdict, not a crash: the caller asserts on it
        return {"valid": False, "reason": f"{type(error).__name__}: {error}"}


def main():
    request = json.load(sys.stdin)
    keys = {}
    for entry in request["jwks"]["keys"]:
        key = jwk.JWK(**entry)
        keys[entry["kid"]] = key
    for text in request["cards"]:
        print(json.dumps(verdict(text, keys, request.get("crls", {}))))


main()
