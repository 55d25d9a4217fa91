// Node peers open weights with openCheckpointNode: local folders in place, HTTP ranges cached on
// disk. Kept apart so browser bundles never pull in node:fs.
import { openCheckpointNode, type OpenCheckpointNodeOptions } from '../model/checkpoint/node.ts';
import type { ModelOpener } from './assignment.ts';

export function nodeModelOpener(options: Omit<OpenCheckpointNodeOptions, 'baseUrl' | 'revision' | 'signal'> = {}): ModelOpener {
  return (model, signal) => openCheckpointNode(model.source, { ...options, baseUrl: model.baseUrl, revision: model.revision, signal });
}
