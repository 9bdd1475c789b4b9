//! Running SQL over `flows`: a DataFusion session with bounded memory that spills to disk.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::{execute_stream, ExecutionPlan};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::table::FlowTable;
use crate::QueryError;

/// How a session runs queries.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The most bytes that the query's operators (aggregations, sorts, joins) hold; past
    /// it they spill to disk, or the query fails if one cannot.
    pub memory_limit: usize,
    /// Where spill files go (otherwise the system's temporary directory).
    pub temp_directory: Option<PathBuf>,
    /// The most bytes of spill files at once.
    pub max_spill_bytes: u64,
    /// How many partitions scans and operators use (one per core by default).
    pub partitions: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            memory_limit: 1 << 30,
            temp_directory: None,
            max_spill_bytes: 100 << 30,
            partitions: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// A DataFusion session with `flows` registered.
pub struct QuerySession {
    ctx: SessionContext,
}

/// A query planned and started: its rows, and its plan (for what it spilled).
pub struct Running {
    pub stream: SendableRecordBatchStream,
    pub plan: Arc<dyn ExecutionPlan>,
}

impl QuerySession {
    pub fn new(table: FlowTable, options: &SessionOptions) -> Result<Self, QueryError> {
        let mode = match &options.temp_directory {
            Some(dir) => DiskManagerMode::Directories(vec![dir.clone()]),
            None => DiskManagerMode::OsTmpDirectory,
        };
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(options.memory_limit)))
            .with_disk_manager_builder(
                DiskManagerBuilder::default()
                    .with_mode(mode)
                    .with_max_temp_directory_size(options.max_spill_bytes),
            )
            .build_arc()
            .map_err(|e| QueryError::Setup(crate::first_line(&e.to_string())))?;
        let partitions = options.partitions.max(1);
        let mut config = SessionConfig::new()
            .with_target_partitions(partitions)
            .with_information_schema(true);
        // A sort holds this much back per partition to merge what it spilled (10 MiB by
        // default): a small limit would go to the reservations alone.
        let reserve = (options.memory_limit / (8 * partitions)).min(10 << 20);
        config.options_mut().execution.sort_spill_reservation_bytes = reserve;
        config.options_mut().execution.sort_in_place_threshold_bytes = reserve;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_table("flows", Arc::new(table))
            .map_err(|e| QueryError::Setup(crate::first_line(&e.to_string())))?;
        Ok(Self { ctx })
    }

    /// Plans `sql` (one statement) and starts it.
    pub async fn run(&self, sql: &str) -> Result<Running, QueryError> {
        let failed = |e: datafusion::error::DataFusionError| QueryError::from_datafusion(&e);
        let frame = self.ctx.sql(sql).await.map_err(failed)?;
        let plan = frame.create_physical_plan().await.map_err(failed)?;
        let stream = execute_stream(Arc::clone(&plan), self.ctx.task_ctx()).map_err(failed)?;
        Ok(Running { stream, plan })
    }
}

/// The bytes a finished plan's operators spilled to disk.
pub fn spilled_bytes(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let own = plan
        .metrics()
        .and_then(|m| m.spilled_bytes())
        .unwrap_or_default();
    own + plan
        .children()
        .into_iter()
        .map(spilled_bytes)
        .sum::<usize>()
}
