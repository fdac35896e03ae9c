//! What a job is: [`JobSpec`], one typed spec per kind. The one place specs
//! meet JSON.

use super::export::ExportJob;
use super::import::ImportJob;
use super::profiles::ProfileJob;
use super::transfer::TransferJob;
use crate::store::{AccountId, JobKind, JobRecord, NewJob, StoreError};

/// A job's typed spec: all a runner needs to run (or rerun) it.
///
/// Stored as its kind ([`JobKind`]) and the spec's JSON (serde, here and
/// nowhere else); [`JobSpec::of`] reads it back.
#[derive(Clone, Debug, PartialEq)]
pub enum JobSpec {
    /// Files into a domain's profiles.
    Profiles(ProfileJob),
    /// Endpoint files into a Pinpoint app.
    Import(ImportJob),
    /// An Import/Export device run.
    Transfer(TransferJob),
    /// A Pinpoint app's endpoints out to a bucket.
    Export(ExportJob),
}

impl JobSpec {
    /// Its kind.
    pub fn kind(&self) -> JobKind {
        match self {
            JobSpec::Profiles(_) => JobKind::Profiles,
            JobSpec::Import(_) => JobKind::Import,
            JobSpec::Transfer(_) => JobKind::Transfer,
            JobSpec::Export(_) => JobKind::Export,
        }
    }

    /// The domain it writes into, if any.
    pub fn domain(&self) -> Option<&str> {
        match self {
            JobSpec::Profiles(p) => Some(&p.domain),
            _ => None,
        }
    }

    /// The app it writes into or reads, if any.
    pub fn app(&self) -> Option<&str> {
        match self {
            JobSpec::Import(i) => Some(&i.app),
            JobSpec::Export(e) => Some(&e.app),
            _ => None,
        }
    }

    /// The spec as stored.
    pub fn to_stored(&self) -> String {
        let json = match self {
            JobSpec::Profiles(p) => serde_json::to_string(p),
            JobSpec::Import(i) => serde_json::to_string(i),
            JobSpec::Transfer(t) => serde_json::to_string(t),
            JobSpec::Export(e) => serde_json::to_string(e),
        };
        // These types always serialize: strings, numbers, maps of them.
        json.unwrap_or_default()
    }

    /// The spec of a kind, read back from its stored form.
    ///
    /// # Errors
    ///
    /// When the text is not a spec of that kind.
    pub fn from_stored(kind: JobKind, text: &str) -> Result<JobSpec, serde_json::Error> {
        Ok(match kind {
            JobKind::Profiles => JobSpec::Profiles(serde_json::from_str(text)?),
            JobKind::Import => JobSpec::Import(serde_json::from_str(text)?),
            JobKind::Transfer => JobSpec::Transfer(serde_json::from_str(text)?),
            JobKind::Export => JobSpec::Export(serde_json::from_str(text)?),
        })
    }

    /// The spec of a stored job.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when its stored spec does not read.
    pub fn of(record: &JobRecord) -> Result<JobSpec, StoreError> {
        JobSpec::from_stored(record.kind, &record.spec).map_err(|e| StoreError::Corrupt {
            location: "the job's spec".into(),
            what: format!("job {}", record.id),
            problem: e.to_string(),
        })
    }

    /// The record of a new job of this spec.
    pub fn new_job(
        &self,
        account: &AccountId,
        id: &str,
        display_name: Option<String>,
        created_ms: i64,
    ) -> NewJob {
        NewJob {
            account: account.clone(),
            id: id.to_owned(),
            kind: self.kind(),
            domain: self.domain().map(str::to_owned),
            app: self.app().map(str::to_owned),
            display_name,
            spec: self.to_stored(),
            created_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_from_before_kinds_were_typed_still_read() {
        // A profile job as stored before inputs became sources: paths.
        let old = r#"{"Domain":"d","Mapping":{"Fields":{},"UniqueKey":"Email"},
                      "Inputs":["/data/uploads/j.sealed"]}"#;
        let JobSpec::Profiles(p) = JobSpec::from_stored(JobKind::Profiles, old).unwrap() else {
            panic!("not a profile job");
        };
        assert_eq!(
            p.inputs,
            [super::super::Source::File("/data/uploads/j.sealed".into())]
        );
        let again = JobSpec::Profiles(p.clone());
        assert_eq!(
            JobSpec::from_stored(JobKind::Profiles, &again.to_stored()).unwrap(),
            again
        );
        assert!(JobSpec::from_stored(JobKind::Import, old).is_err());
    }
}
