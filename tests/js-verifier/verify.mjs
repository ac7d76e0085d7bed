// An independent verifier for vaxtrail credentials: Digital Bazaar's vc.js with the
// eddsa-rdfc-2022 cryptosuite. Nothing is fetched: the W3C and security contexts come from their
// npm packages, vaxtrail's vaccination context and the issuer's DID document from the input.
//
// Input (stdin): {"credentials": [...], "didDocument": {...}, "contexts": {"<url>": {...}},
//                 "statusLists": {"<url>": <signed StatusList2021Credential>}}
// With "statusLists", revocation is checked offline by Digital Bazaar's vc-status-list against
// those lists (each list's own proof verified, its issuer matched); without it, not at all.
// Output (stdout): one line per credential, {"verified": bool, "error": "..."}.
import * as vc from '@digitalbazaar/vc';
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {cryptosuite} from '@digitalbazaar/eddsa-rdfc-2022-cryptosuite';
import credentialsContext from 'credentials-context';
import dataIntegrityContext from '@digitalbazaar/data-integrity-context';
import multikeyContext from '@digitalbazaar/multikey-context';
import didContext from 'did-context';
import {checkStatus} from '@digitalbazaar/vc-status-list';
import statusListContext from '@digitalbazaar/vc-status-list-context';

const input = JSON.parse(await new Promise(resolve => {
  let text = '';
  process.stdin.on('data', chunk => text += chunk);
  process.stdin.on('end', () => resolve(text));
}));

const documents = new Map([
  ...credentialsContext.contexts,
  ...dataIntegrityContext.contexts,
  ...multikeyContext.contexts,
  ...didContext.contexts,
  ...statusListContext.contexts,
  ...Object.entries(input.contexts),
  ...Object.entries(input.statusLists ?? {}),
]);
const did = input.didDocument;
documents.set(did.id, did);
for(const method of did.verificationMethod) {
  documents.set(method.id, {'@context': did['@context'], ...method});
}

const documentLoader = async url => {
  const document = documents.get(url);
  if(!document) {
    throw new Error(`not available offline: ${url}`);
  }
  return {contextUrl: null, documentUrl: url, document};
};

const suite = new DataIntegrityProof({cryptosuite});
for(const credential of input.credentials) {
  try {
    const result = await vc.verifyCredential({
      credential, suite, documentLoader,
      checkStatus: input.statusLists ?
        async () => checkStatus({
          credential, suite, documentLoader,
          verifyStatusListCredential: true, verifyMatchingIssuers: true,
        }) :
        async () => ({verified: true}),
    });
    const error = result.verified ? undefined :
      String(result.error?.errors?.[0]?.message ?? result.error?.message ?? JSON.stringify(result.results?.[0]?.error));
    console.log(JSON.stringify({verified: result.verified, error}));
  } catch(e) {
    console.log(JSON.stringify({verified: false, error: String(e.message ?? e)}));
  }
}
