/** The container side of runtime/: what the layers above use. */
export { ContainerService } from './service';
export { ContainerNotFoundError, type ContainerAction, type ContainerChange, type ContainerDetails, type ContainerView } from './entry';
export type { ExecSession } from './exec';
export type { ContainerFilesystem } from './filesystem';
export type { PathStat } from './archive';
export type { ImageSource, ResolvedImage } from './imagesource';
export type { ShimLauncher, MonitorConnection, MonitorLaunch, ExecProcess } from './launcher';
export type { ContainerRecord, ContainerState, ContainerStateFile } from './record';
export type { StreamSink } from './streams';
export { signalNumber } from './signals';
export { resolvConf } from './etcfiles';
