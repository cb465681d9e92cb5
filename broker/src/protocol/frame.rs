//! Length-prefixed framing. The declared length is checked against the configured maximum
//! *before* anything is allocated for the body, so a peer cannot make the broker reserve
//! memory it never sends.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a frame could not be read. Every variant ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {declared} bytes exceeds max_request_size {max}")]
    TooLarge { declared: i64, max: u32 },
    #[error("frame declares a negative or empty length {0}")]
    BadLength(i32),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one frame body. `Ok(None)` is a clean close between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
) -> Result<Option<Bytes>, FrameError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let declared = i32::from_be_bytes(len);
    if declared <= 0 {
        return Err(FrameError::BadLength(declared));
    }
    if declared as u32 > max {
        return Err(FrameError::TooLarge {
            declared: declared.into(),
            max,
        });
    }
    let mut body = BytesMut::zeroed(declared as usize);
    match reader.read_exact(&mut body).await {
        Ok(_) => Ok(Some(body.freeze())),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_frame_is_rejected_before_reading_body() {
        let data = [0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
        let err = read_frame(&mut &data[..], 1024)
            .await
            .expect_err("too large");
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn truncated_body_is_an_error_and_clean_eof_is_none() {
        let data = [0, 0, 0, 5, 1, 2];
        assert!(matches!(
            read_frame(&mut &data[..], 1024).await,
            Err(FrameError::Truncated)
        ));
        assert!(read_frame(&mut &[][..], 1024).await.expect("eof").is_none());
    }

    #[tokio::test]
    async fn whole_frame_is_returned() {
        let data = [0, 0, 0, 3, 7, 8, 9];
        let body = read_frame(&mut &data[..], 1024)
            .await
            .expect("ok")
            .expect("frame");
        assert_eq!(&body[..], &[7, 8, 9]);
    }
}
