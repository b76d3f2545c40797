// Node's own fetch, then the AWS SDK for JavaScript with its default credential chain: the
// credentials come from the instance metadata service, reached like any other host.
const { KMSClient, GenerateRandomCommand } = require("@aws-sdk/client-kms");

(async () => {
  const r = await fetch(`https://api.egress.test:${process.env.PORT}/node-fetch`);
  console.log("node fetch:", r.status, await r.text());
  const kms = new KMSClient({ region: "us-east-1", endpoint: process.env.AWS_KMS_ENDPOINT });
  const creds = await kms.config.credentials();
  console.log("node sdk credentials:", creds.accessKeyId ? "an access key" : "none", creds.sessionToken ? "with a session token" : "");
  const out = await kms.send(new GenerateRandomCommand({ NumberOfBytes: 32 }));
  console.log("node sdk GenerateRandom:", out.Plaintext.length, "bytes through the KMS proxy");
})().catch((e) => {
  console.log("node failed:", e.name, e.message);
  process.exit(1);
});
