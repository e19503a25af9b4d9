//! TODO(skeleton): filled in by the pipeline work.
