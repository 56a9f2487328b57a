//! The few messages of CRIU's RPC protocol (criu's images/rpc.proto, proto2) that corten
//! sends and reads, written by hand with prost's derive: the field numbers are rpc.proto's,
//! so no protoc or build script is needed. Only what checkpoint and restore use is here;
//! protobuf skips the fields it does not know, so a newer CRIU's extra fields are harmless.

/// `criu_req_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum ReqType {
    Empty = 0,
    Dump = 1,
    Restore = 2,
    Check = 3,
    PreDump = 4,
    PageServer = 5,
    Notify = 6,
    CpuinfoDump = 7,
    CpuinfoCheck = 8,
    FeatureCheck = 9,
    Version = 10,
}

/// `criu_cg_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum CgMode {
    Ignore = 0,
    CgNone = 1,
    Props = 2,
    Soft = 3,
    Full = 4,
    Strict = 5,
    Default = 6,
}

/// `criu_page_server_info`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PageServerInfo {
    #[prost(string, optional, tag = "1")]
    pub address: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub port: Option<i32>,
    #[prost(int32, optional, tag = "3")]
    pub pid: Option<i32>,
    #[prost(int32, optional, tag = "4")]
    pub fd: Option<i32>,
}

/// `ext_mount_map`: on dump, the mount at `key` is external and recorded as `val`; on
/// restore, the external mount recorded as `key` is bound from the host's `val`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExtMountMap {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub val: String,
}

/// `join_namespace`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct JoinNamespace {
    #[prost(string, required, tag = "1")]
    pub ns: String,
    #[prost(string, required, tag = "2")]
    pub ns_file: String,
    #[prost(string, optional, tag = "3")]
    pub extra_opt: Option<String>,
}

/// `inherit_fd`: the resource recorded as `key` is the restorer's fd `fd`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InheritFd {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(int32, required, tag = "2")]
    pub fd: i32,
}

/// `cgroup_root`: the restored tasks' cgroup in controller `ctrl` ("" on cgroup v2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CgroupRoot {
    #[prost(string, optional, tag = "1")]
    pub ctrl: Option<String>,
    #[prost(string, required, tag = "2")]
    pub path: String,
}

/// `criu_opts` (the fields corten sets).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Opts {
    #[prost(int32, required, tag = "1")]
    pub images_dir_fd: i32,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
    #[prost(bool, optional, tag = "3")]
    pub leave_running: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    pub ext_unix_sk: Option<bool>,
    #[prost(bool, optional, tag = "5")]
    pub tcp_established: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub evasive_devices: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub shell_job: Option<bool>,
    #[prost(bool, optional, tag = "8")]
    pub file_locks: Option<bool>,
    #[prost(int32, optional, tag = "9")]
    pub log_level: Option<i32>,
    #[prost(string, optional, tag = "10")]
    pub log_file: Option<String>,
    #[prost(message, optional, tag = "11")]
    pub ps: Option<PageServerInfo>,
    #[prost(bool, optional, tag = "12")]
    pub notify_scripts: Option<bool>,
    #[prost(string, optional, tag = "13")]
    pub root: Option<String>,
    #[prost(string, optional, tag = "14")]
    pub parent_img: Option<String>,
    #[prost(bool, optional, tag = "15")]
    pub track_mem: Option<bool>,
    #[prost(bool, optional, tag = "16")]
    pub auto_dedup: Option<bool>,
    #[prost(int32, optional, tag = "17")]
    pub work_dir_fd: Option<i32>,
    #[prost(message, repeated, tag = "23")]
    pub ext_mnt: Vec<ExtMountMap>,
    #[prost(bool, optional, tag = "24")]
    pub manage_cgroups: Option<bool>,
    #[prost(message, repeated, tag = "25")]
    pub cg_root: Vec<CgroupRoot>,
    #[prost(bool, optional, tag = "26")]
    pub rst_sibling: Option<bool>,
    #[prost(message, repeated, tag = "27")]
    pub inherit_fd: Vec<InheritFd>,
    #[prost(enumeration = "CgMode", optional, tag = "34")]
    pub manage_cgroups_mode: Option<i32>,
    #[prost(string, repeated, tag = "37")]
    pub external: Vec<String>,
    #[prost(uint32, optional, tag = "38")]
    pub empty_ns: Option<u32>,
    #[prost(message, repeated, tag = "39")]
    pub join_ns: Vec<JoinNamespace>,
    #[prost(string, optional, tag = "44")]
    pub freeze_cgroup: Option<String>,
    #[prost(bool, optional, tag = "48")]
    pub lazy_pages: Option<bool>,
    #[prost(int32, optional, tag = "49")]
    pub status_fd: Option<i32>,
    #[prost(bool, optional, tag = "50")]
    pub orphan_pts_master: Option<bool>,
    #[prost(string, optional, tag = "53")]
    pub lsm_profile: Option<String>,
    /// The SELinux context CRIU mounts with (replaces mounts' `context=`; CRIU 3.16+).
    #[prost(string, optional, tag = "63")]
    pub lsm_mount_context: Option<String>,
}

/// `criu_features`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Features {
    #[prost(bool, optional, tag = "1")]
    pub mem_track: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub lazy_pages: Option<bool>,
}

/// `criu_req`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Req {
    #[prost(enumeration = "ReqType", required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub opts: Option<Opts>,
    #[prost(bool, optional, tag = "3")]
    pub notify_success: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    pub keep_open: Option<bool>,
    #[prost(message, optional, tag = "5")]
    pub features: Option<Features>,
}

/// `criu_notify`: a notify script CRIU reached ("setup-namespaces", "post-restore", ...).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Notify {
    #[prost(string, optional, tag = "1")]
    pub script: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
}

/// `criu_restore_resp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RestoreResp {
    #[prost(int32, required, tag = "1")]
    pub pid: i32,
}

/// `criu_dump_resp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DumpResp {
    #[prost(bool, optional, tag = "1")]
    pub restored: Option<bool>,
}

/// `criu_version`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Version {
    #[prost(int32, required, tag = "1")]
    pub major_number: i32,
    #[prost(int32, required, tag = "2")]
    pub minor_number: i32,
    #[prost(string, optional, tag = "3")]
    pub gitid: Option<String>,
    #[prost(int32, optional, tag = "4")]
    pub sublevel: Option<i32>,
}

/// `criu_resp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resp {
    #[prost(enumeration = "ReqType", required, tag = "1")]
    pub r#type: i32,
    #[prost(bool, required, tag = "2")]
    pub success: bool,
    #[prost(message, optional, tag = "3")]
    pub dump: Option<DumpResp>,
    #[prost(message, optional, tag = "4")]
    pub restore: Option<RestoreResp>,
    #[prost(message, optional, tag = "5")]
    pub notify: Option<Notify>,
    #[prost(int32, optional, tag = "7")]
    pub cr_errno: Option<i32>,
    #[prost(message, optional, tag = "8")]
    pub features: Option<Features>,
    #[prost(string, optional, tag = "9")]
    pub cr_errmsg: Option<String>,
    #[prost(message, optional, tag = "10")]
    pub version: Option<Version>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn request_round_trips_with_rpc_proto_tags() {
        let req = Req {
            r#type: ReqType::Dump as i32,
            opts: Some(Opts {
                images_dir_fd: 5,
                pid: Some(42),
                ext_mnt: vec![ExtMountMap {
                    key: "/a".into(),
                    val: "/a".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = req.encode_to_vec();
        // Field 1 (varint) = 1: the type comes first.
        assert_eq!(&bytes[..2], &[0x08, 0x01]);
        assert_eq!(Req::decode(bytes.as_slice()).unwrap(), req);
    }

    #[test]
    fn lsm_mount_context_is_field_63() {
        let opts = Opts {
            lsm_mount_context: Some("ctx".into()),
            ..Default::default()
        };
        let bytes = opts.encode_to_vec();
        // images_dir_fd (field 1, varint 0), then field 63, length-delimited: the key is
        // (63 << 3) | 2 = 506, the varint 0xfa 0x03.
        assert_eq!(bytes, [0x08, 0x00, 0xfa, 0x03, 0x03, b'c', b't', b'x']);
        assert_eq!(Opts::decode(bytes.as_slice()).unwrap(), opts);
    }

    #[test]
    fn response_with_notify_decodes() {
        // type=NOTIFY(6), success=true, notify{script="post-restore", pid=7}
        let mut b = vec![0x08, 0x06, 0x10, 0x01, 0x2a];
        let inner = [&[0x0a, 12][..], b"post-restore", &[0x10, 0x07][..]].concat();
        b.push(inner.len() as u8);
        b.extend_from_slice(&inner);
        let r = Resp::decode(b.as_slice()).unwrap();
        assert_eq!(r.r#type, ReqType::Notify as i32);
        let n = r.notify.unwrap();
        assert_eq!(n.script.as_deref(), Some("post-restore"));
        assert_eq!(n.pid, Some(7));
    }
}
