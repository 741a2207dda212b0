export * from './protocol'
export * from './verify'
export * from './client'
