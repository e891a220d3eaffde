//! Where the access log goes (`appliance.access_log`, docs/operations.md "Access log"):
//! standard output, a file (appended, reopened after rotation), or a syslog daemon
//! (RFC 5424 over UDP or a Unix datagram socket such as `/dev/log`).

use std::net::SocketAddr;

/// A parsed `appliance.access_log` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// `"stdout"`.
    Stdout,
    /// An absolute file path, appended to.
    File(String),
    /// `"syslog:udp://IP:PORT"`: one RFC 5424 datagram per line.
    SyslogUdp(SocketAddr),
    /// `"syslog:unix:/PATH"`: one RFC 5424 datagram per line on a Unix datagram socket.
    SyslogUnix(String),
}

impl AccessLogTarget {
    /// Parses a target, or says why it is not one (the caller names the key).
    pub fn parse(text: &str) -> Result<AccessLogTarget, String> {
        if text == "stdout" {
            return Ok(AccessLogTarget::Stdout);
        }
        if let Some(rest) = text.strip_prefix("syslog:") {
            if let Some(addr) = rest.strip_prefix("udp://") {
                return addr.parse().map(AccessLogTarget::SyslogUdp).map_err(|_| {
                    format!(
                        "{text:?}: syslog over UDP needs an IP:PORT (syslog:udp://127.0.0.1:514)"
                    )
                });
            }
            if let Some(path) = rest.strip_prefix("unix:") {
                if path.starts_with('/') && !path.ends_with('/') {
                    return Ok(AccessLogTarget::SyslogUnix(path.to_string()));
                }
            }
            return Err(format!(
                "{text:?} is not a syslog target (syslog:udp://IP:PORT or syslog:unix:/dev/log)"
            ));
        }
        if text.starts_with('/') && !text.ends_with('/') {
            return Ok(AccessLogTarget::File(text.to_string()));
        }
        Err(format!(
            "{text:?} is neither \"stdout\", an absolute file path, nor a syslog target (syslog:udp://IP:PORT, syslog:unix:/PATH)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::AccessLogTarget as T;

    #[test]
    fn parses_every_kind_and_refuses_the_rest() {
        assert_eq!(T::parse("stdout"), Ok(T::Stdout));
        assert_eq!(
            T::parse("/var/log/weir.log"),
            Ok(T::File("/var/log/weir.log".into()))
        );
        assert_eq!(
            T::parse("syslog:udp://127.0.0.1:514"),
            Ok(T::SyslogUdp(([127, 0, 0, 1], 514).into()))
        );
        assert_eq!(
            T::parse("syslog:unix:/dev/log"),
            Ok(T::SyslogUnix("/dev/log".into()))
        );
        for bad in [
            "log.txt",
            "/var/log/",
            "syslog:udp://localhost:514",
            "syslog:tcp://1.2.3.4:1",
            "syslog:unix:dev/log",
            "",
        ] {
            assert!(T::parse(bad).is_err(), "{bad}");
        }
    }
}
