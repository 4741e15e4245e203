use super::*;

#[test]
fn database_uris_are_recognised_and_spelled_as_sqlalchemy_does() {
    assert!(is_store_url("sqlite:////srv/mlflow.db"));
    assert!(is_store_url("postgresql+psycopg2://u@h/db"));
    assert!(is_store_url("mysql://u@h/db"));
    assert!(!is_store_url("http://127.0.0.1:5000"));
    assert!(!is_store_url("file:///tmp/bundle"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mlflow.db");
    std::fs::write(&file, b"").unwrap();
    let (connect, dialect, key) = connect_url(&format!("sqlite:///{}", file.display())).unwrap();
    assert_eq!(dialect, Dialect::Sqlite);
    assert_eq!(connect, format!("sqlite://{}?mode=ro", file.display()));
    assert_eq!(key, format!("sqlite:///{}", file.display()));
    let missing = connect_url(&format!("sqlite:///{}/other.db", dir.path().display())).unwrap_err();
    assert!(missing.to_string().contains("no database file"), "{missing}");

    // The password is not part of the name a target keeps.
    let (connect, dialect, key) = connect_url("postgresql+psycopg2://mlflow:secret@db:5432/mlflow").unwrap();
    assert_eq!(dialect, Dialect::Postgres);
    assert_eq!(connect, "postgres://mlflow:secret@db:5432/mlflow");
    assert_eq!(key, "postgresql://mlflow@db:5432/mlflow");
    let refused = connect_url("mysql://u@h/db").unwrap_err();
    assert!(refused.to_string().contains("tracking URI"), "{refused}");
}

#[tokio::test]
async fn a_database_that_is_not_mlflows_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("other.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE experiments (experiment_id INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let error = MlflowStoreSource::open(&format!("sqlite:///{}", file.display()), None)
        .await
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("not an MLflow tracking database"),
        "{error}"
    );
}
