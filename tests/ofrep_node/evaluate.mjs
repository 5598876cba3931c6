// Reads one boolean flag through the real OpenFeature OFREP provider for Node, passing the
// default given (the tests pass `true`, the worst case), and prints the evaluation details as JSON.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const [baseUrl, flagKey, fallback] = process.argv.slice(2);
await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl }));
const client = OpenFeature.getClient();
const details = await client.getBooleanDetails(flagKey, fallback === 'true', { targetingKey: 'node-worker' });
console.log(JSON.stringify(details));
await OpenFeature.close();
