//! The harness's control plane is a real one: garbage collection, RBAC, CRDs, and the
//! service proxy reaching a process in a network namespace.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use sealsync_api::SealedSecret;
use sealsync_testkit::{NetNs, TestCluster, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_behaves_like_a_cluster() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace("harness").await?;

    // The SealedSecret CRD is installed and served.
    let sealed: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    assert!(sealed.list(&ListParams::default()).await?.items.is_empty());

    // Garbage collection by kube-controller-manager: deleting the owner removes the Secret.
    let owners: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    let owner = owners
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".into()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            },
        )
        .await?;
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("owned".into()),
                    owner_references: Some(vec![
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                            api_version: "v1".into(),
                            kind: "ConfigMap".into(),
                            name: "owner".into(),
                            uid: owner.metadata.uid.clone().unwrap(),
                            ..Default::default()
                        },
                    ]),
                    ..ObjectMeta::default()
                },
                string_data: Some([("k".to_string(), "v".to_string())].into()),
                ..Secret::default()
            },
        )
        .await?;
    owners.delete("owner", &DeleteParams::default()).await?;
    wait_for(
        "the owned Secret to be garbage-collected",
        Duration::from_secs(90),
        None,
        || {
            let secrets = secrets.clone();
            async move { Ok(secrets.get_opt("owned").await?.is_none()) }
        },
    )
    .await?;

    // RBAC: a ServiceAccount without rights is refused.
    let intruder = cluster.client_as_service_account(&ns, "default").await?;
    let denied = Api::<Secret>::namespaced(intruder, &ns)
        .list(&ListParams::default())
        .await;
    match denied {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn service_proxy_reaches_a_process_in_a_network_namespace() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace("proxy").await?;
    let netns = NetNs::create()?;
    let web_root = cluster.dir().join("web");
    std::fs::create_dir_all(&web_root)?;
    std::fs::write(web_root.join("hello.txt"), "hello from the namespace")?;
    let mut server = netns.serve_files(&web_root, 8080, cluster.dir())?;

    cluster
        .route_service(&ns, "web", "http", 8080, netns.ip())
        .await?;

    let client = cluster.client();
    let path = format!("/api/v1/namespaces/{ns}/services/http:web:http/proxy/hello.txt");
    let get = || client.request_text(http::Request::get(path.clone()).body(Vec::new()).unwrap());
    wait_for(
        "the service proxy",
        Duration::from_secs(30),
        Some(&mut server),
        || async { Ok(get().await.map(|_| true)?) },
    )
    .await?;
    assert_eq!(get().await?, "hello from the namespace");
    Ok(())
}
