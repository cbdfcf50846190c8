/**
 * Method → params schema for every message a client sends the helper. The
 * helper registers a handler only for a method listed here
 * (server/handlers/validated.ts), so a new message without a schema fails at
 * the helper's start, not in the field.
 */
import * as P from './index';
import type { Schema } from './validate';

const messages = [
  P.VersionRequest,
  P.ImagePullRequest,
  P.ImageListRequest,
  P.ImageRemoveRequest,
  P.ImageLoadRequest,
  P.ImageSaveRequest,
  P.ImageInspectRequest,
  P.ImagePruneRequest,
  P.ImagePushRequest,
  P.ImageLoginRequest,
  P.SystemDfRequest,
  P.ContainerRunRequest,
  P.ContainerCreateRequest,
  P.ContainerStartRequest,
  P.ContainerRestartRequest,
  P.ContainerExecRequest,
  P.ContainerAttachRequest,
  P.ContainerListRequest,
  P.ContainerInspectRequest,
  P.ContainerTopRequest,
  P.ContainerStopRequest,
  P.ContainerKillRequest,
  P.ContainerRemoveRequest,
  P.ContainerPruneRequest,
  P.ContainerLogsRequest,
  P.ContainerWaitRequest,
  P.StreamInputNotification,
  P.StreamResizeNotification,
  P.StreamCloseNotification,
  P.VolumeCreateRequest,
  P.VolumeListRequest,
  P.VolumeInspectRequest,
  P.VolumeRemoveRequest,
  P.VolumePruneRequest,
  P.NetworkCreateRequest,
  P.NetworkListRequest,
  P.NetworkInspectRequest,
  P.NetworkRemoveRequest,
  P.NetworkPruneRequest,
  P.ContainerCommitRequest,
  P.ImageBuildRequest,
  P.BuilderPruneRequest,
  P.ContainerDiffRequest,
  P.ImageHistoryRequest,
  P.ImageTagRequest,
  P.ContainerPathStatRequest,
  P.ContainerArchiveOpenReadRequest,
  P.ContainerArchiveReadRequest,
  P.ContainerArchiveOpenWriteRequest,
  P.ContainerArchiveWriteRequest,
];

/** The params schema of each client → helper message, by method. */
export const PARAMS: ReadonlyMap<string, Schema> = new Map(messages.map((m) => [m.method, m.params as Schema]));
