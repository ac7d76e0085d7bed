// An independent verifier for vaxtrail credentials: Digital Bazaar's vc.js with the
// eddsa-rdfc-2022 cryptosuite. Nothing is fetched: the W3C and security contexts come from their
// npm packages, vaxtrail's vaccination context and the issuer's DID document from the input.
//
// Input (stdin): {"credentials": [...], "didDocument": {...}, "contexts": {"<url>": {...}},
//                 "statusLists": {"<url>": <signed list credential>}}
// VC 2.0 credentials and data model 1.1 ones. With "statusLists", revocation is checked offline
// against those lists (each list's own proof verified, its issuer matched): by Digital Bazaar's
// vc-bitstring-status-list for a BitstringStatusListEntry, by vc-status-list for a
// StatusList2021Entry; without it, not at all.
// Output (stdout): one line per credential, {"verified": bool, "error": "..."}.
import * as vc from '@digitalbazaar/vc';
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {cryptosuite} from '@digitalbazaar/eddsa-rdfc-2022-cryptosuite';
import credentialsContext from 'credentials-context';
import {contexts as credentialsContexts} from '@digitalbazaar/credentials-context';
import {checkStatus as checkBitstringStatus} from '@digitalbazaar/vc-bitstring-status-list';
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
  ...credentialsContexts,
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

// The credential's revocation status: verified only when its bit is clear.
async function status(credential) {
  if(credential.credentialStatus?.type === 'BitstringStatusListEntry') {
    const result = await checkBitstringStatus({
      credential, suite, documentLoader,
      verifyBitstringStatusListCredential: true, verifyMatchingIssuers: true,
    });
    const revoked = (result.results ?? []).some(r => r.status);
    return revoked ? {verified: false, error: new Error('revoked: its status bit is set')} : result;
  }
  return checkStatus({
    credential, suite, documentLoader,
    verifyStatusListCredential: true, verifyMatchingIssuers: true,
  });
}
for(const credential of input.credentials) {
  try {
    const result = await vc.verifyCredential({
      credential, suite, documentLoader,
      checkStatus: input.statusLists ?
        async () => status(credential) :
        async () => ({verified: true}),
    });
    const error = result.verified ? undefined :
      String(result.error?.errors?.[0]?.message ?? result.error?.message ??
        (result.statusResult?.verified === false ?
          `status: ${result.statusResult.error?.message ?? 'revoked'}` : undefined) ??
        JSON.stringify(result.results?.[0]?.error));
    console.log(JSON.stringify({verified: result.verified, error}));
  } catch(e) {
    console.log(JSON.stringify({verified: false, error: String(e.message ?? e)}));
  }
}
