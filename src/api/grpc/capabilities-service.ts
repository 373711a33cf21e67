/** The Capabilities service: what clients (Bazel first) check before using the server. */
import type { GetCapabilitiesRequestOut, ServerCapabilities } from './messages.js';
import type { InstanceNames } from './instances.js';

/** REAPI versions served: v2.0 clients and everything up to v2.3 (output_paths, Action.platform, PATH lookup). */
export const LOW_API_VERSION = Object.freeze({ major: 2, minor: 0, patch: 0 });
export const HIGH_API_VERSION = Object.freeze({ major: 2, minor: 3, patch: 0 });

/** ExecutionPolicy.priority accepted (lower runs sooner; 0 is the default), as the HTTP door accepts. */
export const MIN_PRIORITY = -1000;
export const MAX_PRIORITY = 1000;

export interface CapabilitiesServiceDeps {
  instances: InstanceNames;
  maxBatchBytes: number;
  maxBlobBytes: number;
}

export class CapabilitiesService {
  constructor(private readonly deps: CapabilitiesServiceDeps) {}

  async getCapabilities(req: GetCapabilitiesRequestOut): Promise<ServerCapabilities> {
    this.deps.instances.check(req.instance_name);
    return {
      cache_capabilities: {
        digest_functions: ['SHA256'],
        action_cache_update_capabilities: { update_enabled: true },
        cache_priority_capabilities: { priorities: [{ min_priority: 0, max_priority: 0 }] },
        max_batch_total_size_bytes: this.deps.maxBatchBytes,
        // Input symlinks must stay inside the input root (cas/tree.ts), so absolute targets are refused.
        symlink_absolute_path_strategy: 'DISALLOWED',
        // zstd in ByteStream's compressed-blobs and in batches (cas/zstd.ts, decision 0033).
        supported_compressors: ['ZSTD'],
        supported_batch_update_compressors: ['ZSTD'],
        max_cas_blob_size_bytes: this.deps.maxBlobBytes,
      },
      execution_capabilities: {
        digest_function: 'SHA256',
        digest_functions: ['SHA256'],
        exec_enabled: true,
        execution_priority_capabilities: { priorities: [{ min_priority: MIN_PRIORITY, max_priority: MAX_PRIORITY }] },
        supported_node_properties: [],
      },
      deprecated_api_version: LOW_API_VERSION,
      low_api_version: LOW_API_VERSION,
      high_api_version: HIGH_API_VERSION,
    };
  }
}
