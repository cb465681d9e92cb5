//! Framing of the quorum RPC: a u32 big-endian length, then that many bytes of JSON.
//!
//! The declared length is checked against [`MAX_FRAME`] before anything is allocated.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest accepted frame body (snapshot chunks are 3 MiB of bytes, ~12 MiB as JSON).
pub(crate) const MAX_FRAME: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Reads one frame; `Ok(None)` on a clean end of stream before the length.
pub(crate) async fn read<T, R>(reader: &mut R) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(Some(serde_json::from_slice(&body)?))
}

/// Writes one frame and flushes it.
pub(crate) async fn write<T, W>(writer: &mut W, value: &T) -> Result<(), FrameError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let body = serde_json::to_vec(value)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len()))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    writer.write_all(&buf).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let mut buf = Vec::new();
        write(&mut buf, &vec![1u8, 2, 3]).await.expect("write");
        let got: Option<Vec<u8>> = read(&mut buf.as_slice()).await.expect("read");
        assert_eq!(got, Some(vec![1, 2, 3]));

        let empty: Option<Vec<u8>> = read(&mut &[][..]).await.expect("eof");
        assert_eq!(empty, None);

        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let err = read::<Vec<u8>, _>(&mut &huge[..]).await;
        assert!(matches!(err, Err(FrameError::TooLarge(_))));

        let garbage = [0, 0, 0, 2, b'{', b'x'];
        let err = read::<Vec<u8>, _>(&mut &garbage[..]).await;
        assert!(matches!(err, Err(FrameError::Decode(_))));
    }
}
