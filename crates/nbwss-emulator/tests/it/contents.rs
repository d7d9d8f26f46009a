//! Image contents, both ways: the Perl recipe `api_requests_image_contents.pl` (request id, then pages
//! until 404, reading `filePath`) and `GET /catalog/image-contents` with the documented filter keys.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::util::{encode, vnd, Server};

/// The Perl recipe sends the version in `Accept` only.
async fn perl_get(server: &Server, path: &str, token: &str) -> crate::util::Reply {
    server.send("GET", path, &[("Authorization", token), ("Accept", &vnd("2.0"))], None).await
}

#[tokio::test]
async fn the_perl_recipe_pages_with_a_request_id_until_404() {
    let server = Server::start().await;
    let token = server.login().await;
    let images = perl_get(&server, "/catalog/images", &token).await.json();
    let backup_id = images["data"][0]["id"].as_str().unwrap().to_owned();
    let num_files = server.get(&format!("/catalog/images/{backup_id}"), &token).await.json()["data"]
        ["attributes"]["numFiles"]
        .as_u64()
        .unwrap();

    let reply =
        perl_get(&server, &format!("/catalog/images/{backup_id}/contents?page[limit]=60"), &token).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let request_id = reply.json()["requestId"].as_str().unwrap().to_owned();
    let mut paths = Vec::new();
    let mut pages = 0;
    loop {
        let reply = perl_get(&server, &format!("/catalog/images/contents/{request_id}"), &token).await;
        if reply.status == 404 {
            reply.assert_error(404);
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.text);
        let page = reply.json();
        assert_eq!(page["meta"]["pagination"]["limit"], 100, "60 rounds up to a multiple of 50");
        assert!(page["links"]["next"]["href"].as_str().unwrap().ends_with(&request_id));
        for entry in page["data"].as_array().unwrap() {
            paths.push(entry["attributes"]["filePath"].as_str().unwrap().to_owned());
            assert!(entry["attributes"]["fileSize"].is_i64() && entry["attributes"]["inImageFlag"].is_i64());
        }
        pages += 1;
        assert!(pages < 1000, "the pages never end");
    }
    let files = paths.iter().filter(|path| !path.ends_with('/')).count();
    assert_eq!(files as u64, num_files, "every file of the image, once");
    assert_eq!(paths.len(), paths.iter().collect::<BTreeSet<_>>().len());
    assert_eq!(pages, paths.len().div_ceil(100));
    // The request is gone after its last page, and DELETE drops an open one.
    perl_get(&server, &format!("/catalog/images/contents/{request_id}"), &token).await.assert_error(404);
    let reply = perl_get(&server, &format!("/catalog/images/{backup_id}/contents"), &token).await;
    let other = reply.json()["requestId"].as_str().unwrap().to_owned();
    let delete = server
        .send("DELETE", &format!("/catalog/images/contents/{other}"), &[("Authorization", &token)], None)
        .await;
    assert_eq!(delete.status, 204);
    perl_get(&server, &format!("/catalog/images/contents/{other}"), &token).await.assert_error(404);
    for limit in ["49", "10001", "x"] {
        perl_get(&server, &format!("/catalog/images/{backup_id}/contents?page[limit]={limit}"), &token)
            .await
            .assert_error(400);
    }
    perl_get(&server, "/catalog/images/nosuch_1/contents", &token).await.assert_error(404);
}

fn names(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["attributes"]["fullPath"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn image_contents_by_client_with_the_documented_filters() {
    let server = Server::start().await;
    let token = server.login().await;
    let ids = server.handle.start_backup("Standard_FS", Some("FULL")).unwrap();
    crate::util::eventually("the backups to finish", || async {
        let job = server.get(&format!("/admin/jobs/{}", ids[0]), &token).await.json();
        (job["data"]["attributes"]["state"] == "DONE").then_some(())
    })
    .await;
    let client = "client01.example.com";
    let query =
        |filter: &str, extra: &str| format!("/catalog/image-contents?filter={}{extra}", encode(filter));

    let page = server.get(&query(&format!("clientName eq '{client}'"), ""), &token).await.json();
    let entries = page["data"].as_array().unwrap();
    assert_eq!(entries.len(), 100, "the default page is 100");
    let first = &entries[0];
    assert_eq!(first["type"], "imageContentListEntry");
    for key in ["clientName", "path", "name", "itemType", "size", "backupTime", "nasProtocol"] {
        assert!(!first["attributes"][key].is_null(), "required {key}: {first}");
    }
    assert_eq!(first["attributes"]["clientName"], client);
    assert!(page["meta"]["pagination"]["count"].as_u64().unwrap() > 100);
    assert!(page["links"]["next"]["href"].as_str().unwrap().contains("filter="));

    let etc = server
        .get(
            &query(&format!("clientName eq '{client}' and startswith(path, '/etc/')"), "&page[limit]=100"),
            &token,
        )
        .await
        .json();
    assert!(names(&etc).iter().all(|path| path.starts_with("/etc/")), "{etc}");
    let dirs = server
        .get(&query(&format!("clientName eq '{client}' and itemType eq 'DIR'"), ""), &token)
        .await
        .json();
    assert!(names(&dirs).iter().all(|path| path.ends_with('/')));
    let named = server
        .get(
            &query(
                &format!("clientName eq '{client}' and contains(tolower(name), 'file0001')"),
                "&sort=-name",
            ),
            &token,
        )
        .await
        .json();
    assert!(
        !names(&named).is_empty() && names(&named).iter().all(|path| path.contains("file0001")),
        "{named}"
    );
    let old = server
        .get(&query(&format!("clientName eq '{client}' and backupTime le 2000-01-01T00:00:00Z"), ""), &token)
        .await
        .json();
    assert!(old["data"].as_array().unwrap().is_empty());
    let unpaged = server
        .get(
            &query(
                &format!("clientName eq '{client}' and startswith(fullPath,'/home/')"),
                "&page[disable]=true",
            ),
            &token,
        )
        .await
        .json();
    assert!(unpaged["data"].as_array().unwrap().len() > 1);

    for bad in ["", "path eq '/etc/'", "clientName ne 'x'", "fullPath eq '/etc/'"] {
        let path = if bad.is_empty() { "/catalog/image-contents".to_owned() } else { query(bad, "") };
        server.get(&path, &token).await.assert_error(400);
    }
    server
        .get(&query(&format!("clientName eq '{client}'"), "&page[limit]=101"), &token)
        .await
        .assert_error(400);
    server.get(&query(&format!("clientName eq '{client}'"), "&sort=size"), &token).await.assert_error(400);
}
