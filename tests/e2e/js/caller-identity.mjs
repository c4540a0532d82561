// Print the STS caller identity, and the access key used for it, as JSON.
//
// Credentials come only from the instance metadata service, through
// fromInstanceMetadata(), which reads AWS_EC2_METADATA_SERVICE_ENDPOINT and
// uses IMDSv2. The STS endpoint comes from AWS_ENDPOINT_URL_STS, which must
// be set so that no request leaves the machine.
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import { fromInstanceMetadata } from "@aws-sdk/credential-providers";

const stsEndpoint = process.env.AWS_ENDPOINT_URL_STS;
if (!stsEndpoint) {
  console.error("AWS_ENDPOINT_URL_STS is missing: set it to the URL of the STS mock server");
  process.exit(2);
}
if (!process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT) {
  console.error(
    "AWS_EC2_METADATA_SERVICE_ENDPOINT is missing: set it to the metadata server's URL",
  );
  process.exit(2);
}

const client = new STSClient({
  region: "us-east-1",
  endpoint: stsEndpoint,
  credentials: fromInstanceMetadata(),
});
const identity = await client.send(new GetCallerIdentityCommand({}));
// The client caches what the provider returned, so this reads the
// credentials that signed the request above without a second IMDS fetch.
const credentials = await client.config.credentials();

console.log(
  JSON.stringify({
    accessKeyId: credentials.accessKeyId,
    expiration: credentials.expiration?.toISOString() ?? null,
    account: identity.Account,
    arn: identity.Arn,
  }),
);
